"""The benchmark harness: worlds at several scales, the pipeline's cost per stage, references."""
