//! The one error type of the projectors.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    RedisReply(#[from] redis::ParsingError),
    #[error("redis forgot its scripts: it restarted, perhaps with older data")]
    ScriptsLost,
    #[error("the active read model is no longer {expected}")]
    GenerationMoved { expected: String },
    #[error("durable read model: {0}")]
    Durable(#[from] podium_durable::Error),
    #[error("rebuild: {0}")]
    Rebuild(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("creating topic {topic}: {reason}")]
    TopicCreation { topic: String, reason: String },
}
