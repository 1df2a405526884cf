//! Readers of the TF.js web formats (placeholder, filled in on branch `model`).
