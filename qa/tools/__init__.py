"""Build- and measure-time tools, not used by the running service: the bundled model converter, the eval harness."""
