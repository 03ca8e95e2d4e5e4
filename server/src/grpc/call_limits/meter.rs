//! Metering a request body against the buffer budget, message by message.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::GRPC_FRAME_HEADER_BYTES;

/// Tracks the gRPC message framing of a request body and holds budget for the message being
/// received.
pub(super) struct Meter {
    budget: Arc<Semaphore>,
    max_message_bytes: usize,
    framing: Framing,
    /// Budget held for the current message; bytes beyond the reservation are added as they come.
    held: Option<OwnedSemaphorePermit>,
    /// Bytes the current reservation still covers.
    covered: usize,
}

/// Where the meter is in the body.
enum Framing {
    /// Reading a 5-byte length prefix; holds the bytes seen so far.
    Prefix {
        seen: [u8; GRPC_FRAME_HEADER_BYTES],
        len: usize,
    },
    /// Inside a message with this many bytes still to come.
    Message { remaining: usize },
    /// Not gRPC: every byte is metered as it arrives.
    Raw,
}

/// The budget cannot hold the bytes a request needs.
#[derive(Debug)]
pub(super) struct OverBudget;

// === impl Meter ===

impl Meter {
    /// Whether the meter is still reading the first message's prefix, holding nothing yet.
    pub(super) fn awaits_first_reservation(&self) -> bool {
        matches!(self.framing, Framing::Prefix { .. }) && self.held.is_none()
    }

    pub(super) fn new(budget: Arc<Semaphore>, max_message_bytes: usize, grpc: bool) -> Self {
        let framing = if grpc {
            Framing::Prefix {
                seen: [0; GRPC_FRAME_HEADER_BYTES],
                len: 0,
            }
        } else {
            Framing::Raw
        };
        Self {
            budget,
            max_message_bytes,
            framing,
            held: None,
            covered: 0,
        }
    }

    /// Accounts for `data` arriving: reserves each message's declared length (up to the
    /// largest message the API accepts) when its prefix is complete, and any byte beyond a
    /// reservation as it comes.
    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), OverBudget> {
        while !data.is_empty() {
            match &mut self.framing {
                Framing::Raw => {
                    self.cover(data.len())?;
                    data = &[];
                }
                Framing::Message { remaining } if *remaining > 0 => {
                    let taken = (*remaining).min(data.len());
                    *remaining -= taken;
                    data = &data[taken..];
                    self.cover(taken)?;
                }
                Framing::Message { .. } => {
                    self.framing = Framing::Prefix {
                        seen: [0; GRPC_FRAME_HEADER_BYTES],
                        len: 0,
                    };
                }
                Framing::Prefix { seen, len } => {
                    let taken = (GRPC_FRAME_HEADER_BYTES - *len).min(data.len());
                    seen[*len..*len + taken].copy_from_slice(&data[..taken]);
                    *len += taken;
                    data = &data[taken..];
                    if *len == GRPC_FRAME_HEADER_BYTES {
                        let declared = u32::from_be_bytes([seen[1], seen[2], seen[3], seen[4]]);
                        self.start_message(declared as usize)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A new message of `declared` bytes: the previous message's budget is released (its
    /// bytes have been handed on) and this one's reserved.
    pub(super) fn start_message(&mut self, declared: usize) -> Result<(), OverBudget> {
        self.held = None;
        self.covered = 0;
        // A message longer than the API accepts is refused by the decoder at its prefix; the
        // reservation stops at that size and any byte beyond is metered as it arrives.
        let reserve = declared
            .min(self.max_message_bytes)
            .saturating_add(GRPC_FRAME_HEADER_BYTES);
        self.hold(reserve)?;
        self.covered = reserve - GRPC_FRAME_HEADER_BYTES;
        self.framing = Framing::Message {
            remaining: declared,
        };
        Ok(())
    }

    /// Counts `bytes` against the reservation, adding budget for what it does not cover.
    pub(super) fn cover(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let within = bytes.min(self.covered);
        self.covered -= within;
        match bytes - within {
            0 => Ok(()),
            beyond => self.hold(beyond),
        }
    }

    pub(super) fn hold(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let bytes = u32::try_from(bytes).map_err(|_| OverBudget)?;
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| OverBudget)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}
