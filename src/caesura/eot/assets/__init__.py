"""Bundled end-of-turn model files (model.onnx, tokenizer.json, config.json, sha256.json)."""
