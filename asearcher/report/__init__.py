"""The report: the paper's tables and figures regenerated from a run's outputs, beside the paper's numbers.

The papermill notebooks in notebooks/ are thin: each calls one `write_*` function per product, which reads the
run's outputs, writes a table (CSV and Markdown) and/or a figure (PNG and PDF) under results/report/, and says so
in the table and the figure when an input is missing ("missing: <path>, made by <rule>"). docs/report.md lists
the products; `layout` names their files (the Snakemake rules declare the same names).

    paper         the paper's numbers (data/paper_results.csv) and figure readings (data/paper_figures.yaml)
    runs          reading a run's outputs: merged config, eval aggregates and protocol cards, metrics, rollouts
    tables        Table: rows -> CSV and Markdown, missing inputs as rows
    figures       figure helpers: a caption naming the run, a message panel for missing inputs, PNG + PDF
    main_results  Tables 2-4: the suite's results beside the paper's, with the difference and the protocol card
    before_after  Fig. 8: before vs after RL, in-distribution benchmarks labelled
    dynamics      Fig. 6, 9, 10 (tool calls, tokens, reward, staleness over steps) and Fig. 11 (keyword counts)
    synthesis     Fig. 5: QA-synthesis statistics
    sweeps        one figure and table per ablation sweep (results/sweeps/<sweep>/runs.json)
"""
