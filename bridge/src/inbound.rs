//! A message as the bridge holds it between the broker and its decision: the publish with any
//! part too large to be read dropped on arrival (its size kept for the refusal), and the
//! connection it came in on. The dispatcher queues these ([`crate::dispatch`]) and the processor
//! decides them ([`crate::process`]).

use rumqttc::Publish;
use tapgate_protocol::MAX_PAYLOAD_BYTES;

/// Longest topic the bridge keeps; a longer one is refused as `bad_topic` (device topics are at
/// most about 100 bytes even with a long prefix).
pub(crate) const MAX_TOPIC_BYTES: usize = 512;

/// A publish as queued: oversized parts already dropped, their sizes kept for the refusal.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The publish (payload emptied if it was too large, topic emptied if it was too long).
    pub publish: Publish,
    /// The payload's size as received, bytes.
    pub payload_len: usize,
    /// The topic's length as received, bytes.
    pub topic_len: usize,
    /// The connection it came in on (its acknowledgement is only good there).
    pub session: u64,
}

impl Inbound {
    /// Drops the parts of `publish` (received on connection `session`) no handler will read, so
    /// a queued message stays small.
    pub(crate) fn new(mut publish: Publish, session: u64) -> Self {
        let payload_len = publish.payload.len();
        let topic_len = publish.topic.len();
        if payload_len > MAX_PAYLOAD_BYTES {
            drop(std::mem::take(&mut publish.payload));
        }
        if topic_len > MAX_TOPIC_BYTES {
            drop(std::mem::take(&mut publish.topic));
        }
        Self {
            publish,
            payload_len,
            topic_len,
            session,
        }
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::QoS;

    use super::*;

    #[test]
    fn oversized_parts_are_not_kept() {
        let p = Publish::new(
            "tapgate/gate/g1/tap",
            QoS::AtLeastOnce,
            vec![b'x'; 70 * 1024],
        );
        let i = Inbound::new(p, 0);
        assert_eq!(i.payload_len, 70 * 1024);
        assert!(i.publish.payload.is_empty());
        assert_eq!(i.publish.topic, "tapgate/gate/g1/tap");
        let p = Publish::new("t".repeat(MAX_TOPIC_BYTES + 1), QoS::AtMostOnce, "{}");
        let i = Inbound::new(p, 0);
        assert!(i.publish.topic.is_empty());
        assert_eq!(i.topic_len, MAX_TOPIC_BYTES + 1);
        assert_eq!(&i.publish.payload[..], b"{}");
    }
}
