//! What a job run state string means to the operator. The service publishes no enum, so any
//! string is accepted: unknown ones are treated as "still going" and shown verbatim.

/// The operator's reading of a state string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateClass {
    /// Submitted or Pending: not started yet; polled briskly.
    Queued,
    /// Running or Cancelling.
    Active,
    /// A cancel request failed and the run may still be alive: keep polling, slowly.
    CancelFailed,
    /// A string this operator does not know: non-terminal, polled slowly.
    Unknown,
    Succeeded,
    Failed,
    Cancelled,
}

impl StateClass {
    pub fn of(state: &str) -> Self {
        match state {
            "Submitted" | "Pending" => Self::Queued,
            "Running" | "Cancelling" => Self::Active,
            "CancelFailed" => Self::CancelFailed,
            "Success" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Cancelled" => Self::Cancelled,
            _ => Self::Unknown,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// States that deserve a Warning event when entered.
    pub fn is_suspicious(self) -> bool {
        matches!(self, Self::CancelFailed | Self::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let table = [
            ("Submitted", StateClass::Queued, false),
            ("Pending", StateClass::Queued, false),
            ("Running", StateClass::Active, false),
            ("Cancelling", StateClass::Active, false),
            ("CancelFailed", StateClass::CancelFailed, false),
            ("Success", StateClass::Succeeded, true),
            ("Failed", StateClass::Failed, true),
            ("Cancelled", StateClass::Cancelled, true),
            ("Exploding", StateClass::Unknown, false),
            ("success", StateClass::Unknown, false),
            ("", StateClass::Unknown, false),
        ];
        for (state, class, terminal) in table {
            assert_eq!(StateClass::of(state), class, "{state}");
            assert_eq!(class.is_terminal(), terminal, "{state}");
        }
    }
}
