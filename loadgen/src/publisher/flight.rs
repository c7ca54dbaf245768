//! Which messages of a channel are still unanswered (what `u=` reports).

use std::collections::VecDeque;

/// The unanswered messages of one channel: `done[i]` tells whether seq
/// `front + i` was answered; the front is always unanswered.
#[derive(Default)]
pub struct Flight {
    front: u64,
    done: VecDeque<bool>,
}

impl Flight {
    /// Registers `seq` as sent; returns the lowest unanswered seq.
    pub fn sent(&mut self, seq: u64) -> u64 {
        if self.done.is_empty() {
            self.front = seq;
        } else if seq < self.front + self.done.len() as u64 {
            // Sent again (its connection closed before it was answered).
            return self.front;
        }
        while self.front + (self.done.len() as u64) < seq {
            // Seqs skipped (never sent) count as answered.
            self.done.push_back(true);
        }
        self.done.push_back(false);
        self.pop();
        self.front
    }

    pub fn answered(&mut self, seq: u64) {
        if seq >= self.front {
            if let Some(d) = self.done.get_mut((seq - self.front) as usize) {
                *d = true;
            }
        }
        self.pop();
    }

    fn pop(&mut self) {
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.front += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_unanswered() {
        let mut f = Flight::default();
        // (sent or answered, seq, lowest unanswered after it)
        let steps: &[(bool, u64, u64)] = &[
            (true, 0, 0),
            (true, 1, 0),
            (false, 1, 0),
            (true, 2, 0),
            (false, 0, 2),
            (true, 5, 2),
            (false, 2, 5),
        ];
        for (i, &(sent, seq, front)) in steps.iter().enumerate() {
            if sent {
                assert_eq!(f.sent(seq), front, "step {i}");
            } else {
                f.answered(seq);
                assert_eq!(f.front, front, "step {i}");
            }
        }
        // Sent again after its connection closed: the front does not move.
        assert_eq!(f.sent(5), 5);
    }
}
