"""One name for one thing: task names, metric keys, header keys and file names."""

from __future__ import annotations

# Task names (server -> site).
TASK_FED_STATS = "fed_stats"
TASK_SET_SCALING = "set_scaling"
TASK_TRAIN = "train"
TASK_VALIDATE = "validate"
TASK_SUBMIT_MODEL = "submit_model"
TASK_EHR_PROFILE = "ehr_profile"  # a tabular site's small-cell-suppressed counts (fedhealth.ehr.profile)
TASK_SET_SCHEMA = "set_schema"  # the aligned schema and its imputation/scaling, server -> sites
TASK_SUBMIT_TREE = "submit_tree_model"  # a tree job's trained XGBoost model, site -> server (fedhealth.trees)

# Keys in DXO meta / data.
META_LEARNING_RATE = "fedhealth_learning_rate"
META_ROUND = "fedhealth_round"
META_SITE_METRICS = "fedhealth_site_metrics"
META_LOCAL_STEPS = "fedhealth_local_steps"  # optimizer steps a site took this round (FedNova's tau_i)
HEADER_ERROR = "fedhealth_error"
META_COMPRESSION = "fedhealth_compression"  # how an update was compressed, and its wire sizes
COMPRESSED_KIND = "fedhealth.COMPRESSED"  # DXO kind of a compressed payload; stock filters skip it
RESIDUAL_FILE = "fedhealth_ef_residual.npz"  # a site's error-feedback memory, in its run folder
META_SITE_METADATA = "fedhealth_site_metadata"  # non-PHI fields a site declares (clustered FL)
META_CLUSTER = "fedhealth_cluster"  # the cluster whose model a train task carries

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
M_TOPK_K_FRACTION = "topk_k_fraction"  # the share of each tensor a top-k round sent (1.0: a dense round)
M_INTERVALS = "intervals"  # metrics with 95% bootstrap intervals (training/site_metrics.py)
M_OPERATING_POINT = "operating_point"  # a site's threshold chosen on val (training/site_operating_point.py)
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
SITE_CONFIG_FILE = "fedhealth_site.json"  # in the site's local/ folder: the hospital's own settings
SITE_CONFIG_DEFAULT_FILE = "fedhealth_site.json.default"  # written at provisioning; the own file wins
SITE_LIMITS_KEY = "limits"  # the floor under every train request (fedhealth.policy.site_limits)
SITE_SCOPE_LIMITS_KEY = "scope_limits"  # {privacy scope: limits} applied over "limits" under that scope
SITE_POLICY_DECLINED = "site policy"  # opens the reason of a task a site declines under its limits
SITE_DATA_ROOT_KEY = "data_root"
SITE_METADATA_KEY = (
    "metadata"  # optional non-PHI site description, e.g. {"scanner": "ge", "type": "teaching"}
)
SITE_MAX_LOCAL_STEPS_KEY = "max_local_steps"  # the site's maximum local optimizer steps per round
SITE_MIN_CELL_KEY = "min_cell_count"  # the smallest count a site releases (the larger of this and the job's)
HEART_DATASET_DIR = "heart_disease"
TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"
SCALING_STATE_FILE = "fedhealth_scaling.json"
EHR_SCHEMA_FILE = "ehr_schema.json"  # the aligned schema of a tabular job (server and site run folders)
CLUSTERS_FILE = "fedhealth_clusters.json"  # clustered FL: the clusters of every round (server run folder)
PERSONAL_MODEL_FILE = "fedhealth_personal_model.npz"  # Ditto's personal model; stays in the site's run folder

# Differential privacy (fedhealth.privacy): the site's own ε cap, its files, the ledger metric.
SITE_DP_MAX_EPSILON_KEY = "dp_max_epsilon"  # optional: a site's own ε budget, below the job's target
DP_ACCOUNTANT_FILE = "fedhealth_dp_accountant.json"  # in the site's run folder, after every round
DP_LEDGER_FILE = "fedhealth_dp_ledger.json"
M_PRIVACY = "privacy"  # this round's ledger entry, in the site metrics of a train result
DP_DECLINED = "privacy budget exhausted"  # opens the reason of a site that declines to train
CLIENT_DP_LEDGER_FILE = "fedhealth_client_dp_ledger.json"  # server run folder: DP-FedAvg epsilon per round

# Server-side events and props.
EVENT_UPDATE_REJECTED = "fedhealth.update_rejected"  # fired by the robust aggregator
PROP_REJECTION = "fedhealth.rejection"  # {"site", "round", "reason"} of a rejected update
EVENT_SITES_SAMPLED = "fedhealth.sites_sampled"  # a sampling workflow chose the round's train targets
PROP_SITES_SAMPLED = "fedhealth.sample_draw"  # that event's data: {"round", "sampled", "connected", ...}
EVENT_CLIENT_DP_ROUND = "fedhealth.client_dp_round"  # DP-FedAvg released a round: its ledger entry
PROP_CLIENT_DP_ROUND = "fedhealth.client_dp_entry"  # that event's data: the ledger entry (ε, q, ...)

# Server-side run record (in the server's run folder; downloaded with the job result).
RUN_RECORD_FILE = "fedhealth_run.json"
STATS_GROUP = "fedhealth"
CROSS_VAL_DIR = "cross_site_val"
CROSS_VAL_FILE = "cross_val_results.json"
GLOBAL_MODEL_NAME = "SRV_server"

# Homomorphic encryption (TenSEAL CKKS contexts written by FLARE's HEBuilder into startup kits).
HE_SERVER_CONTEXT_FILE = "server_context.tenseal"  # public part only: no secret key
HE_SITE_CONTEXT_FILE = "client_context.tenseal"  # with the secret key shared by the sites
META_MODEL_SHAPES = "fedhealth_model_shapes"  # {name: shape}: HE flattens every tensor it sends
HE_SHAPES_FILE = "fedhealth_model_shapes.json"  # a site's copy of the shapes, in its run folder
EVENT_HE_CONTEXT_ERROR = "fedhealth.he_context_error"  # fed event: a site's context is missing/invalid
M_HE = "he"  # per-round encryption facts of a site's update, as the server measured them
M_HE_BYTES_SENT = "bytes_sent"  # ... serialized update as it arrived (ciphertexts and clear layers)
M_HE_BYTES_PLAIN = "bytes_plain"  # ... the same update serialized in clear (float32)

# Hospitals in the UCI Heart Disease data, as FLARE site names.
HEART_SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")

# Site privacy scopes (privacy.json filters) and the server's record of what arrived.
META_PRIVACY = "fedhealth_privacy"  # DXO meta: list of {"filter", ...} a site's scope applied
UPDATE_AUDIT_FILE = "fedhealth_update_audit.json"  # in the server's run folder
DP_UPDATE_LEDGER_FILE = "fedhealth_dp_update_ledger.json"  # DPUpdate's releases, in the site's run folder
DP_UPDATE_DECLINED = "update privacy budget exhausted"  # opens DPUpdate's refusal past max_epsilon
# Imaging (chest X-ray) sites: settings in the site's own local/fedhealth_site.json, files, metric keys.
SITE_REQUIRE_DEIDENTIFIED_KEY = (
    "require_deidentified"  # refuse DICOM files with identifying tags (default on)
)
SITE_IMAGE_CACHE_KEY = "image_cache"  # decoded-image cache folder (default <site>/image_cache)
IMAGE_CACHE_DIR = "image_cache"
QUARANTINE_REPORT_FILE = "fedhealth_quarantine.json"  # stays in the site's run folder
M_PER_LABEL_AUC = "per_label_auc"
M_PER_FINDING = "per_finding"  # finding -> its intervals (multi-label; multi-class one-vs-rest)
M_POSITIVE_CLASS = "positive_class"  # what sensitivity counts as positive, in a validate result
M_N_QUARANTINED = "n_quarantined"
M_SUPPRESSED = "suppressed"  # what a site withheld as a small cell: ["auc: fewer than 5 positive patients"]
M_IMAGES_PER_S = "images_per_s"

# SCAFFOLD's parts of a train task and its result (the names FLARE's ScatterAndGatherScaffold uses).
SCAFFOLD_CTRL_GLOBAL = "scaffold_c_global"
SCAFFOLD_CTRL_DIFF = "scaffold_c_diff"
MODEL_PART = "_model_weights_"  # the model part of a collection task (FLARE AppConstants.MODEL_WEIGHTS)
FINETUNED_MODEL_FILE = "fedhealth_finetuned_model.npz"  # fine-tuning's model; stays in the run folder
TOPK_RESIDUAL_FILE = "fedhealth_topk_residual.npz"  # the top-k algorithm's error-feedback memory
M_EVAL_SPLIT = "eval_split"  # the split of a round's received/local metrics (the report labels by it)
EVENT_TREE_MODEL = "fedhealth.tree_model_collected"  # the server holds a tree job's model
PROP_TREE_MODEL = "fedhealth.tree_model"  # that event's data: a dict for the run record
EVENT_SITE_FAILED = "fedhealth.site_failed"  # a workflow names a site that failed outside a task reply
PROP_SITE_FAILURE = "fedhealth.site_failure"  # that event's data: {"site", "task", "reason"}
EVENT_ASYNC_PROGRESS = "fedhealth.async_progress"  # the asynchronous (FedBuff) workflow's record
PROP_ASYNC_PROGRESS = "fedhealth.async_record"  # that event's data: settings, versions, staleness

# SecAgg+ (fedhealth.secagg): the protocol's tasks, the header that carries the relayed shares with the
# train task, and the DXO kinds of a masked update and of a protocol message.
TASK_SECAGG_ADVERTISE = "secagg_advertise"
TASK_SECAGG_SHARE_KEYS = "secagg_share_keys"
TASK_SECAGG_UNMASK = "secagg_unmask"
SECAGG_TASKS = (TASK_SECAGG_ADVERTISE, TASK_SECAGG_SHARE_KEYS, TASK_SECAGG_UNMASK)
HEADER_SECAGG = "fedhealth_secagg"
SECAGG_MASKED_KIND = "fedhealth.SECAGG_MASKED"
SECAGG_MESSAGE_KIND = "fedhealth.SECAGG"
SECAGG_MASKED_KEY = "masked"

# Flower apps under FLARE (fedhealth.flower): the site folder the kit's FLARE executor hands the
# Flower ClientApp process (its data and settings are the site's own, found from there).
FLOWER_SITE_ROOT_ENV = "FEDHEALTH_SITE_ROOT"
