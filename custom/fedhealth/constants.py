"""One name for one thing: task names, metric keys, header keys and file names."""

from __future__ import annotations

# Task names (server -> site).
TASK_FED_STATS = "fed_stats"
TASK_SET_SCALING = "set_scaling"
TASK_TRAIN = "train"
TASK_VALIDATE = "validate"
TASK_SUBMIT_MODEL = "submit_model"

# Keys in DXO meta / data.
META_LEARNING_RATE = "fedhealth_learning_rate"
META_ROUND = "fedhealth_round"
META_SITE_METRICS = "fedhealth_site_metrics"
META_LOCAL_STEPS = "fedhealth_local_steps"  # optimizer steps a site took this round (FedNova's tau_i)
HEADER_ERROR = "fedhealth_error"
META_COMPRESSION = "fedhealth_compression"  # how an update was compressed, and its wire sizes
COMPRESSED_KIND = "fedhealth.COMPRESSED"  # DXO kind of a compressed payload; stock filters skip it
RESIDUAL_FILE = "fedhealth_ef_residual.npz"  # a site's error-feedback memory, in its run folder

# Metric keys (aggregate numbers only; never patient values).
M_ACCURACY = "accuracy"
M_AUC = "auc"
M_LOSS = "loss"
M_TRAIN_LOSS = "train_loss"
M_N_TRAIN = "n_train"
M_N_TEST = "n_test"
M_STEPS = "steps"  # local optimizer steps taken this round
M_LOCAL_LOSS = "local_loss"  # the site's model after local training, on its test split
M_TASK_S = "task_s"  # seconds the site spent in its train task (evaluate, train, evaluate)
M_BYTES_RAW = "bytes_raw"  # the update's serialized size before compression
M_BYTES_SENT = "bytes_sent"  # ... as the site sent it (after compression)
M_BYTES_RECEIVED = "bytes_received"  # ... as the server measured it on arrival
M_COMPRESSION = "compression"  # the compression label, e.g. "topk 0.01 +EF"
M_INTERVALS = "intervals"  # metrics with 95% bootstrap intervals (training/site_metrics.py)
# Per-round curves each site streams to the server (FLARE analytics -> TensorBoard).
STREAMED_METRICS = ("train_loss", "global_loss", "local_loss", "global_accuracy", "global_auc")
ANALYTICS_EVENT = "fed.analytix_log_stats"
TB_DIR = "tb_events"

# Federated statistics payload keys.
S_COUNT = "count"
S_SUM = "sum"
S_SUMSQ = "sumsq"
S_MEAN = "mean"
S_STD = "std"
S_FEATURES = "features"

# Site-side files and settings.
SITE_CONFIG_FILE = "fedhealth_site.json"  # in the site's local/ folder
SITE_DATA_ROOT_KEY = "data_root"
SITE_MAX_LOCAL_STEPS_KEY = "max_local_steps"  # optional cap on a slow site's optimizer steps per round
HEART_DATASET_DIR = "heart_disease"
TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"
SCALING_STATE_FILE = "fedhealth_scaling.json"

# Server-side events and props.
EVENT_UPDATE_REJECTED = "fedhealth.update_rejected"  # fired by the robust aggregator
PROP_REJECTION = "fedhealth.rejection"  # {"site", "round", "reason"} of a rejected update

# Server-side run record (in the server's run folder; downloaded with the job result).
RUN_RECORD_FILE = "fedhealth_run.json"
STATS_GROUP = "fedhealth"
CROSS_VAL_DIR = "cross_site_val"
CROSS_VAL_FILE = "cross_val_results.json"
GLOBAL_MODEL_NAME = "SRV_server"

# Hospitals in the UCI Heart Disease data, as FLARE site names.
HEART_SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")
