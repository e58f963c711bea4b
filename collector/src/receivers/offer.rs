//! Offering one payload to every pipeline a receiver feeds, for receivers that keep a refused payload
//! and offer it again later (a file tailer, a syslog TCP connection) instead of answering a client.
//!
//! An [`Offer`] remembers which pipelines already took the payload, so offering it again after a
//! refusal never hands a second copy to a pipeline that has one: backpressure causes no duplicates.
//! The last pipeline gets the payload itself, the others a copy, and a refused payload comes back
//! uncopied (`PipelineInput::try_admit_or_return`).

use outpost_pipelines::{AckWait, PipelineInput, Refusal, SignalData};

pub struct Offer<T> {
    data: Option<T>,
    bytes: u64,
    admitted: usize,
    waits: Vec<AckWait>,
}

impl<T: SignalData> Offer<T> {
    /// `bytes`: the payload's size as read, for the pipelines' memory budgets.
    pub fn new(data: T, bytes: u64) -> Offer<T> {
        Offer {
            data: Some(data),
            bytes,
            admitted: 0,
            waits: Vec::new(),
        }
    }

    /// Offers the payload to each of `inputs` that has not taken it yet. `Ok` once every one has.
    pub fn try_admit(&mut self, inputs: &[PipelineInput<T>]) -> Result<(), Refusal> {
        while self.admitted < inputs.len() {
            let last = self.admitted + 1 == inputs.len();
            let data = if last {
                self.data.take().unwrap_or_default()
            } else {
                self.data.clone().unwrap_or_default()
            };
            match inputs[self.admitted].try_admit_or_return(data, self.bytes) {
                Ok(wait) => {
                    self.waits.push(wait);
                    self.admitted += 1;
                }
                Err((refusal, data)) => {
                    if last {
                        self.data = Some(data);
                    }
                    return Err(refusal);
                }
            }
        }
        Ok(())
    }

    /// How many pipelines have taken the payload.
    pub fn admitted(&self) -> usize {
        self.admitted
    }

    /// Resolves once every pipeline that took the payload has queued it durably, or with the first
    /// refusal among them.
    pub async fn wait(self) -> Result<(), Refusal> {
        let mut result = Ok(());
        for w in self.waits {
            if let Err(refusal) = w.wait().await {
                result = result.and(Err(refusal));
            }
        }
        result
    }
}
