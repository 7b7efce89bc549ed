"""Command-line tools beside the product: benchmarks, generation, training and evaluation of the embedded model."""
