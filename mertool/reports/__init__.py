"""Reports from run folders: the metrics, the evaluate report, calibration, ablation tables, the published standing.

    metrics.py      accuracy, UF1, UAR, macro F1, confusion over pooled LOSO predictions (MEGC definitions)
    evaluate.py     run folders -> the report: pooled metrics, per-class and per-subject tables, mean ± std over
                    seeds, pictures (evaluate_run, evaluate_runs)
    calibration.py  temperature scaling fitted on the training subjects' held-out predictions only
    ablate.py       the paper's tables run as recipe variants through LOSO (`mertool ablate`)
    published.py    the paper's Table 1, and where a run stands among it
"""
