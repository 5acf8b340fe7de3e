"""nnU-Net v2 glue: raw dataset writer, planning presets, training runner, in-process predictor."""
