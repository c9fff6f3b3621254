//! Shared AWS profiles (`~/.aws/credentials`, `~/.aws/config`) for S3 stores.
//!
//! object_store reads credentials from the environment, web identity, container and
//! instance metadata, but not from the shared profile files that people use on their
//! own machines. This fills that gap for profiles holding static keys: the profile named
//! by `AWS_PROFILE` (else `default`) supplies the access key, secret, session token and
//! region that the environment did not already give. Profiles that assume a role or use
//! SSO need the AWS SDK; they are reported, not guessed at.

use std::path::{Path, PathBuf};

use ini::Ini;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// Static settings found in a shared profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileSettings {
    /// `aws_access_key_id`.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key`.
    pub secret_access_key: Option<String>,
    /// `aws_session_token`.
    pub session_token: Option<String>,
    /// `region` (from the config file, or the credentials file).
    pub region: Option<String>,
    /// The profile delegates to a role, SSO or a process, which is not supported here.
    pub unsupported: Option<String>,
}

fn home_file(env: &str, relative: &str) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(relative)))
}

/// Reads profile `name` from the given credentials and config files (either may be
/// missing).
pub fn read(name: &str, credentials: Option<&Path>, config: Option<&Path>) -> ProfileSettings {
    let load = |p: Option<&Path>| {
        p.filter(|p| p.exists())
            .and_then(|p| Ini::load_from_file(p).ok())
    };
    let mut settings = ProfileSettings::default();
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    if let Some(ini) = load(config)
        && let Some(section) = ini.section(Some(config_section.as_str()))
    {
        settings.region = section.get("region").map(str::to_owned);
        for key in [
            "role_arn",
            "sso_start_url",
            "sso_session",
            "credential_process",
        ] {
            if section.contains_key(key) {
                settings.unsupported = Some(key.to_owned());
            }
        }
    }
    if let Some(ini) = load(credentials)
        && let Some(section) = ini.section(Some(name))
    {
        let get = |k: &str| section.get(k).map(str::to_owned);
        settings.access_key_id = get("aws_access_key_id");
        settings.secret_access_key = get("aws_secret_access_key");
        settings.session_token = get("aws_session_token");
        settings.region = settings.region.or_else(|| get("region"));
    }
    settings
}

/// Fills what the environment left unset from the shared profile, if there is one.
pub fn apply(builder: AmazonS3Builder) -> AmazonS3Builder {
    let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    let credentials = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config = home_file("AWS_CONFIG_FILE", ".aws/config");
    apply_settings(
        builder,
        &name,
        &read(&name, credentials.as_deref(), config.as_deref()),
    )
}

fn apply_settings(
    mut builder: AmazonS3Builder,
    name: &str,
    s: &ProfileSettings,
) -> AmazonS3Builder {
    if let Some(key) = &s.unsupported {
        tracing::warn!(profile = name, setting = %key, "the AWS profile uses a setting this server cannot follow; give credentials through the environment, web identity or instance metadata");
    }
    let unset = |b: &AmazonS3Builder, k: AmazonS3ConfigKey| b.get_config_value(&k).is_none();
    // Keys only as a pair, and only when the environment gave none.
    if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key)
        && unset(&builder, AmazonS3ConfigKey::AccessKeyId)
        && unset(&builder, AmazonS3ConfigKey::SecretAccessKey)
    {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = &s.session_token {
            builder = builder.with_token(token);
        }
        tracing::info!(profile = name, "S3 credentials from the shared AWS profile");
    }
    if let Some(region) = &s.region
        && unset(&builder, AmazonS3ConfigKey::Region)
    {
        builder = builder.with_region(region);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_profiles_fill_what_the_environment_left_unset() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let credentials = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &credentials,
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n\n[billing]\naws_access_key_id=AKIABILLING\naws_secret_access_key=s2\naws_session_token=t2\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&config, "[default]\nregion = us-east-1\n[profile billing]\nregion = eu-central-1\n[profile sso]\nsso_session = corp\n")
            .unwrap_or_else(|e| panic!("{e}"));

        let billing = read("billing", Some(&credentials), Some(&config));
        assert_eq!(billing.access_key_id.as_deref(), Some("AKIABILLING"));
        assert_eq!(billing.session_token.as_deref(), Some("t2"));
        assert_eq!(billing.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            read("default", Some(&credentials), Some(&config))
                .region
                .as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            read("sso", Some(&credentials), Some(&config))
                .unsupported
                .as_deref(),
            Some("sso_session")
        );
        assert_eq!(read("missing", None, None), ProfileSettings::default());

        let b = apply_settings(AmazonS3Builder::new(), "billing", &billing);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::AccessKeyId)
                .as_deref(),
            Some("AKIABILLING")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-central-1")
        );
        // The environment (here: an explicit key) wins over the profile.
        let env = AmazonS3Builder::new()
            .with_access_key_id("AKIAENV")
            .with_secret_access_key("e")
            .with_region("ap-south-1");
        let b = apply_settings(env, "billing", &billing);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::AccessKeyId)
                .as_deref(),
            Some("AKIAENV")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("ap-south-1")
        );
    }
}
