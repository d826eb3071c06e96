//! Transport security: TLS and SASL for Kafka, TLS for Redis, and secrets that never print.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

/// A secret from a flag or the environment; `Debug` shows `[REDACTED]`.
pub fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value.to_owned()))
}

/// How the Kafka clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum KafkaProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaProtocol {
    fn librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// TLS and SASL for every Kafka client. Flattened into [`crate::KafkaArgs`].
#[derive(Debug, Clone, Default, Args)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(
        long = "kafka-security-protocol",
        env = "PODIUM_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value_t
    )]
    pub protocol: KafkaProtocol,

    /// PEM file of the CA that signed the brokers' certificates; without it, the system's.
    #[arg(long = "kafka-ssl-ca-file", env = "PODIUM_KAFKA_SSL_CA_FILE")]
    pub ssl_ca_file: Option<PathBuf>,

    /// PEM certificate and key of this client, for brokers that require client certificates.
    #[arg(long = "kafka-ssl-cert-file", env = "PODIUM_KAFKA_SSL_CERT_FILE")]
    pub ssl_cert_file: Option<PathBuf>,

    #[arg(long = "kafka-ssl-key-file", env = "PODIUM_KAFKA_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,

    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with the two settings below.
    #[arg(long = "kafka-sasl-mechanism", env = "PODIUM_KAFKA_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,

    #[arg(long = "kafka-sasl-username", env = "PODIUM_KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    #[arg(
        long = "kafka-sasl-password",
        env = "PODIUM_KAFKA_SASL_PASSWORD",
        value_parser = secret,
        hide_env_values = true
    )]
    pub sasl_password: Option<SecretString>,
}

impl KafkaSecurity {
    /// Adds these settings to a client's configuration.
    pub fn apply(&self, config: &mut ClientConfig) {
        let _ = config.set("security.protocol", self.protocol.librdkafka());
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(ca) = &self.ssl_ca_file {
            let _ = config.set("ssl.ca.location", path(ca));
        }
        if let Some(cert) = &self.ssl_cert_file {
            let _ = config.set("ssl.certificate.location", path(cert));
        }
        if let Some(key) = &self.ssl_key_file {
            let _ = config.set("ssl.key.location", path(key));
        }
        if let Some(mechanism) = &self.sasl_mechanism {
            let _ = config.set("sasl.mechanism", mechanism);
        }
        if let Some(username) = &self.sasl_username {
            let _ = config.set("sasl.username", username);
        }
        if let Some(password) = &self.sasl_password {
            let _ = config.set("sasl.password", password.expose_secret());
        }
    }
}

/// Opens a Redis client: `redis://` in the clear, `rediss://` over TLS, verified against
/// `ca_file` when given, else against the system's roots.
pub fn redis_client(
    url: &SecretString,
    ca_file: Option<&std::path::Path>,
) -> Result<redis::Client, redis::RedisError> {
    let url = url.expose_secret();
    match ca_file {
        None => redis::Client::open(url),
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "PODIUM_REDIS_CA_FILE cannot be read",
                    format!("{}: {e}", path.display()),
                ))
            })?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
    }
}
