"""Tool code beside the product: training and scoring of the embedded model, CLIP tokenizer generation and
LDM key conversion. Used by ``cli/`` and ``tests/``; Easel itself (``modules/``) never imports it."""
