//! The request body watched for the gRPC length prefix of each message: a
//! message announcing more than the limit fails the body at once, before
//! its bytes are buffered, with a status the handler's decoder passes on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::Bytes;

use super::LimitError;
use crate::telemetry::Metrics;

/// Bytes of the gRPC message prefix: a compression flag and a big-endian
/// u32 length.
const PREFIX_LEN: usize = 5;

/// A request body whose messages may be at most `limit` bytes.
pub struct MessageLimitBody<B> {
    inner: B,
    limit: usize,
    /// Bytes of the current prefix read so far.
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    metrics: Arc<Metrics>,
}

impl<B> MessageLimitBody<B> {
    pub fn new(inner: B, limit: usize, metrics: Arc<Metrics>) -> Self {
        MessageLimitBody {
            inner,
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            remaining: 0,
            metrics,
        }
    }

    /// Follows the message boundaries through `data`; the size of the
    /// first message over the limit, if any.
    fn scan(&mut self, mut data: &[u8]) -> Option<usize> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skipped = self.remaining.min(data.len());
                self.remaining -= skipped;
                data = &data[skipped..];
                continue;
            }
            let wanted = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + wanted].copy_from_slice(&data[..wanted]);
            self.prefix_len += wanted;
            data = &data[wanted..];
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let length = [
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ];
                let size = u32::from_be_bytes(length) as usize;
                if size > self.limit {
                    return Some(size);
                }
                self.remaining = size;
            }
        }
        None
    }
}

impl<B> Body for MessageLimitBody<B>
where
    B: Body<Data = Bytes, Error = tonic::Status> + Unpin,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(size) = this.scan(data)
        {
            let error = LimitError::MessageTooLarge {
                size,
                limit: this.limit,
            };
            this.metrics.rpc_shed(error.metric_reason());
            return Poll::Ready(Some(Err(tonic::Status::from(error))));
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(size: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&size.to_be_bytes());
        bytes
    }

    #[test]
    fn message_boundaries_are_followed_across_chunks() {
        let mut body = MessageLimitBody::new((), 10, Arc::new(Metrics::default()));
        let mut stream = prefix(10);
        stream.extend_from_slice(&[7; 10]);
        stream.extend(prefix(3));
        stream.extend_from_slice(&[7; 3]);
        // Byte by byte: each prefix is split across chunks.
        for byte in &stream {
            assert_eq!(body.scan(std::slice::from_ref(byte)), None);
        }
        assert_eq!(body.scan(&stream), None, "in one chunk too");
        let mut too_large = prefix(11);
        too_large.extend_from_slice(&[7; 11]);
        assert_eq!(body.scan(&too_large[..3]), None);
        assert_eq!(body.scan(&too_large[3..]), Some(11));
    }
}
