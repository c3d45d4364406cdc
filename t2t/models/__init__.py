"""t2t models: layers.py (blocks, logical axes) -> transformer.py (EncoderDecoder, DecoderOnly,
EncoderOnly) -> model.py (build_model: init/loss/score/predict) with variants.py (named shapes,
count_params, flops_per_token), decoding.py (greedy/sampling/beam) and convert.py (HF T5 and
t2t checkpoints)."""
