//! What can stop a request: the protocol refusing it (rendered as a 4xx) or
//! the platform failing underneath (a 5xx in the adapter). Keeping the two
//! apart is what lets the engine use `?` without ever turning bad input into
//! a 500.

use crate::protocol::error::{Invalid, ProtocolError};

#[derive(Debug)]
pub enum Failure<E> {
    Protocol(ProtocolError),
    Store(E),
}

impl<E> From<ProtocolError> for Failure<E> {
    fn from(e: ProtocolError) -> Self {
        Failure::Protocol(e)
    }
}

impl<E> From<Invalid> for Failure<E> {
    fn from(e: Invalid) -> Self {
        Failure::Protocol(e.into())
    }
}

/// Lifts a store error into a [`Failure`].
pub trait StoreResult<T, E> {
    fn store(self) -> Result<T, Failure<E>>;
}

impl<T, E> StoreResult<T, E> for Result<T, E> {
    fn store(self) -> Result<T, Failure<E>> {
        self.map_err(Failure::Store)
    }
}
