"""The book's machinery (the top layer): notebook parameters and registry, claim records and
metrics, plotting, the chapter context, cached execution and the build, the generated appendix
and result index, claims across seeds, reference figure data, determinism, the browser check, Ctrl-C,
the CLI."""
