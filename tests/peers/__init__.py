"""Independent SMPP peers (node-smpp) for testing roxgate's connector; see README.md."""
