"""Training: the cache as tensors, the leave-one-subject-out fold loop, and the run folder it fills.

    dataset.py   MERData: the cache with the recipe's class map and sample list applied; batched augmentation
    train.py     train_loso -> run_fold -> _train_epoch: the fixed schedule, AU sources, divergence (no file I/O)
    runs.py      the run folder: layout, plan, fold claims, checkpoints, predictions; every file a run writes
    parallel.py  folds in worker processes, K per device (train_loso_parallel, what `train-loso` calls)
    cluster.py   folds and ablation grids as Slurm job arrays (submitit)
    estimate.py  how long a run will train, said before its first fold starts
    discover.py  the short form: `train-loso` with no recipe and no --cache
"""
