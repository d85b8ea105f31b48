//! The protobuf codec of the bindery services: tonic-prost's encoding, and decoding that answers
//! a message that is not valid protobuf with `INVALID_ARGUMENT` naming the message type.
//!
//! tonic-prost maps every decode error to `INTERNAL`, which tells a client that sent garbage that
//! the server broke, and makes it look retryable. The generated clients use this codec too, so a
//! reply that is not valid protobuf gets the same status there; a bindery server only sends what
//! prost encoded.

use std::marker::PhantomData;

use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Encodes `T` and decodes `U` with prost (set as the codec of the generated `bindery.v1` code).
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self { inner: ProstCodec::default() }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        // Encoding a message built in this process cannot meet bad input: tonic-prost's as is.
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder { _message: PhantomData }
    }
}

/// Decodes `U`, refusing bytes that are not a valid `U` with `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed::<U>(&e))
    }
}

/// The status for bytes that are not a valid `U`: the message type, then where prost stopped.
fn malformed<U: Name>(error: &prost::DecodeError) -> Status {
    let detail = error.to_string();
    // prost's own prefix would repeat what this message already says.
    let detail = detail.strip_prefix("failed to decode Protobuf message: ").unwrap_or(&detail);
    Status::invalid_argument(format!("not a valid {} message: {detail}", U::full_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::pb;

    #[test]
    fn decode_errors_name_the_message_type_and_the_problem() {
        // An `inputs` entry whose length prefix runs past the end of the message.
        let bytes = [0x12, 0x20, 0x0a, 0x01, b't'];
        let error = pb::EmbedRequest::decode(bytes.as_slice()).unwrap_err();
        let status = malformed::<pb::EmbedRequest>(&error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "not a valid bindery.v1.EmbedRequest message: EmbedRequest.inputs: buffer underflow"
        );
    }
}
