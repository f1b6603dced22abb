"""Stage 3: the files a run writes for people and scripts."""
