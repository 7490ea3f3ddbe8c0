"""The input pipeline: training samples cut from sequences, JPEG decoding, batches, photometric
augmentation and normalisation."""
