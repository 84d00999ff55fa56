//! The protobuf codec of every Sesame client and server: prost, with small
//! initial buffers.
//!
//! tonic's default codec reserves 8 KiB per call for encoding and decoding.
//! A WatchEvents stream lives for hours and its messages are a few hundred
//! bytes, so with thousands of watchers those reservations dominate the
//! server's memory. Buffers here start at 1 KiB and grow as a message needs.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode and decode buffer of every call.
const BUFFER_SIZE: usize = 1024;
/// Encoded bytes gathered before yielding to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec with [`BUFFER_SIZE`] initial buffers.
#[derive(Debug, Clone, Copy)]
pub struct SesameCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SesameCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SesameCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
