//! Scoring a text: the logits the model gives for each next token, on
//! whatever runs it now (`shardlab perplexity` compares precisions with it).

use super::{Orchestrator, OrchestratorError};

impl Orchestrator {
    /// Runs `ids` on sequence 0 from position 0 and hands `each(i, logits)`
    /// the logits that predict `ids[i + 1]`, for every `i` from `from` to
    /// the second-to-last token: `ids[..=from]` goes through as one prompt,
    /// then one token a step. Sequence 0's cache is forgotten afterwards.
    pub fn score(
        &mut self,
        ids: &[u32],
        from: usize,
        each: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), OrchestratorError> {
        if from + 1 >= ids.len() {
            return Err(OrchestratorError::setup(
                "scoring a text",
                format!(
                    "{} tokens leave nothing to score from token {from}",
                    ids.len()
                ),
            ));
        }
        self.cached.clear();
        let mut backend = self.parts().sequence_backend()?;
        backend.truncate(0)?;
        let result = (|| {
            each(from, &backend.forward(&ids[..=from], 0)?);
            for i in from + 1..ids.len() - 1 {
                each(i, &backend.forward(&ids[i..=i], i)?);
            }
            backend.truncate(0)
        })();
        drop(backend);
        self.adopt_recovery();
        self.tokens_since_load += ids.len() as u64;
        result.map_err(|e| self.step_error(e))
    }
}
