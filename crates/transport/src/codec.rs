//! The gRPC codec of kvfeed's CDC streams: requests are encoded with prost, responses are handed
//! over as raw frames.
//!
//! Keeping the response frame raw lets the receive loop run the very function the fuzz target and
//! the benchmark exercise ([`crate::demux::decode_frame`]): one prost decode per frame, from a
//! [`Bytes`] that tonic splits off its receive buffer without copying, so every key and value of
//! the frame is a slice of it.

use bytes::{Buf as _, Bytes};
use prost::Message as _;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::request::WireRequest;

/// Encodes [`WireRequest`]s, decodes nothing: each response message is returned as its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrameCodec;

/// The request half of [`FrameCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestEncoder;

/// The response half of [`FrameCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrameDecoder;

impl Codec for FrameCodec {
    type Encode = WireRequest;
    type Decode = Bytes;
    type Encoder = RequestEncoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        FrameDecoder
    }
}

impl Encoder for RequestEncoder {
    type Item = WireRequest;
    type Error = Status;

    fn encode(&mut self, item: WireRequest, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // The buffer grows on demand, so encoding cannot run out of space.
        item.as_message().encode(dst).map_err(|error| Status::internal(error.to_string()))
    }
}

impl Decoder for FrameDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // `DecodeBuf` holds exactly one message; splitting it off tonic's buffer does not copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
