"""Run one FuxiCTR model on Frappe_x1 with its BARS configuration; print one JSON line.

Runs in FuxiCTR's own virtual environment (never imported by skrec or its tests), called by
``benchmarks/ctr.py``::

    /work/venvs/fuxictr/bin/python benchmarks/_fuxictr_peer.py --model DeepFM --seed 2021 \
        --model-zoo /work/venvs/fuxictr/model_zoo --data ../shared/data/frappe/x1 --work /tmp/fx

The model classes come from FuxiCTR's ``model_zoo`` (``DeepFM/DeepFM_torch/src`` and
``DCNv2/src`` of the FuxiCTR repository at the installed version: the pip package ships only
the library). The hyper-parameters are the BARS Frappe_x1 ones (DeepFM_frappe_x1_001_4ae3a56e
and DCNv2_frappe_x1_007_c207b717): batch 4096, embeddings of 10 with an L2 regulariser of
0.05, Adam at 1e-3 with the learning rate divided by 10 on each plateau, early stopping on
validation AUC with patience 2, batch normalisation in the MLPs. One thread, no loader worker
process, so the CPU seconds are all the work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

BARS = {
    "DeepFM": {
        "hidden_units": [400, 400, 400], "hidden_activations": "relu", "net_dropout": 0.2,
        "batch_norm": True, "embedding_regularizer": 0.05, "net_regularizer": 0,
    },
    "DCNv2": {
        "model_structure": "parallel", "use_low_rank_mixture": False, "low_rank": 32,
        "num_experts": 4, "num_cross_layers": 4, "stacked_dnn_hidden_units": [500, 500, 500],
        "parallel_dnn_hidden_units": [400, 400, 400], "dnn_activations": "relu",
        "net_dropout": 0.4, "batch_norm": True, "embedding_regularizer": 0.05,
        "net_regularizer": 0,
    },
}
FIELDS = ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
          "country", "city"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(BARS), required=True)
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--model-zoo", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    zoo = {"DeepFM": "DeepFM/DeepFM_torch", "DCNv2": "DCNv2"}[args.model]
    sys.path.insert(0, os.path.join(args.model_zoo, zoo))
    import src  # FuxiCTR's model_zoo package of that model
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything

    logging.basicConfig(level=logging.WARNING)
    data = os.path.abspath(args.data)
    params = {
        "model": args.model, "dataset_id": "frappe_x1", "data_root": args.work,
        "data_format": "csv", "train_data": f"{data}/train.csv",
        "valid_data": f"{data}/valid.csv", "test_data": f"{data}/test.csv",
        "min_categr_count": 1,
        "feature_cols": [{"active": True, "dtype": "str", "name": FIELDS,
                          "type": "categorical"}],
        "label_col": {"dtype": "float", "name": "label"},
        "loss": "binary_crossentropy", "metrics": ["AUC", "logloss"],
        "task": "binary_classification", "optimizer": "adam", "learning_rate": 1e-3,
        "embedding_dim": 10, "batch_size": args.batch_size, "epochs": args.epochs,
        "shuffle": True, "seed": args.seed, "monitor": "AUC", "monitor_mode": "max",
        "early_stop_patience": 2, "model_root": os.path.join(args.work, "checkpoints"),
        "num_workers": 0, "verbose": 0, "save_best_only": True, "eval_steps": None,
        "pickle_feature_encoder": True, "gpu": -1, "rebuild_dataset": True,
        **BARS[args.model],
    }
    seed_everything(seed=args.seed)
    data_dir = os.path.join(args.work, params["dataset_id"])
    feature_encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(
        feature_encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    model = getattr(src, args.model)(feature_map, **params)
    os.makedirs(os.path.dirname(model.checkpoint), exist_ok=True)
    train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)

    eval_time = {"wall": 0.0, "cpu": 0.0}
    inner_eval = model.eval_step

    def timed_eval():
        w, c = time.perf_counter(), time.process_time()
        inner_eval()
        eval_time["wall"] += time.perf_counter() - w
        eval_time["cpu"] += time.process_time() - c

    model.eval_step = timed_eval
    w0, c0 = time.perf_counter(), time.process_time()
    model.fit(train_gen, validation_data=valid_gen, **params)
    fit_wall, fit_cpu = time.perf_counter() - w0, time.process_time() - c0
    epochs = model._epoch_index + 1
    n_train = int(train_gen.num_samples)
    valid = model.evaluate(valid_gen)
    test_gen = RankDataLoader(feature_map, stage="test", **params)
    test = model.evaluate(test_gen)
    train_wall = fit_wall - eval_time["wall"]
    print(json.dumps({
        "model": f"FuxiCTR {args.model} (BARS)", "seed": args.seed,
        "valid_auc": float(valid["AUC"]), "valid_logloss": float(valid["logloss"]),
        "test_auc": float(test["AUC"]), "test_logloss": float(test["logloss"]),
        "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall, "epochs": epochs,
        "train_wall_s": train_wall, "eval_wall_s": eval_time["wall"],
        "train_samples_per_s": n_train * epochs / train_wall,
        "n_train": n_train, "threads": torch.get_num_threads(),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "batch_size": args.batch_size, "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
