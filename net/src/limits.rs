//! Named limits of the wire formats, unit last. Each says why it has its value.

/// Largest frame, counting its 4-byte length prefix. Java's `NettyDecoder` and the Rust
/// client both refuse anything larger (`com.rocketmq.remoting.frameMaxLength` default).
pub const FRAME_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Largest message body and largest stored record: RocketMQ's `maxMessageSize` default,
/// which clients also enforce before sending.
pub const MESSAGE_SIZE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The stored format prefixes properties with a signed 16-bit length.
pub const PROPERTIES_SIZE_MAX_BYTES: usize = i16::MAX as usize;

/// A topic name longer than this is written with the V2 magic (2-byte topic length);
/// the V1 magic has a 1-byte length that Java reads as signed.
pub const TOPIC_V1_LEN_MAX_BYTES: usize = 127;

/// The V2 topic length is a signed 16-bit value.
pub const TOPIC_LEN_MAX_BYTES: usize = i16::MAX as usize;

/// The frame's header-length word keeps 24 bits for the length; the top byte is the
/// serialize type.
pub const HEADER_SIZE_MAX_BYTES: usize = 0x00FF_FFFF;

/// Bytes of a frame before its header: the length prefix and the header-length word.
pub const FRAME_PREFIX_BYTES: usize = 8;

/// A binary header key has a signed 16-bit length.
pub const HEADER_KEY_LEN_MAX_BYTES: usize = i16::MAX as usize;

/// Fixed part of one SEND_BATCH_MESSAGE item (totalSize, magic, bodyCRC, flag,
/// bodyLength, propertiesLength): anything shorter cannot be an item.
pub const BATCH_ITEM_FIXED_BYTES: usize = 4 + 4 + 4 + 4 + 4 + 2;
