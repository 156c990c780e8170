"""Developer tools beside the carbonlake library: the synthetic world generator and the
benchmark. Executors never need them: `spark-submit --py-files` ships carbon_core alone."""
