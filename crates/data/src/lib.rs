//! Dataset readers, the split protocol of arXiv 2505.15443 and a synthetic task.
