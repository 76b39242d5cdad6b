//! What an engine decision asks of the adapter: write this (maybe nothing),
//! then answer this.

use super::response::Response;
use super::store::Commit;

#[derive(Debug)]
pub struct Decision {
    pub commit: Option<Box<Commit>>,
    pub response: Response,
}

impl Decision {
    /// Answer without writing.
    pub fn reply(response: Response) -> Decision {
        Decision {
            commit: None,
            response,
        }
    }

    /// Write, then answer.
    pub fn write(commit: Commit, response: Response) -> Decision {
        Decision {
            commit: Some(Box::new(commit)),
            response,
        }
    }
}
