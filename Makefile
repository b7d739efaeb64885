# fedhealth: two commands matter, `make demo` and `make test`.
PY_BOOT ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.fedhealth-installed
# Flower 1.42 in its own environment (its pins move protobuf, cryptography and packaging below the kit's):
# the side-by-side benchmarks and the Flower-under-FLARE job run there; the kit's .venv never imports flwr.
FLOWER_VENV := .venv-flower

.PHONY: setup jobs demo demo-he demo-cxr test test-fast lint format docs docs-tables bench-heart bench-ehr bench-xgboost bench-faults bench-fedbuff bench-compression bench-topk-schedule bench-dp privacy-utility privacy-utility-cxr bench-he bench-noniid bench-noniid-cxr bench-cxr bench-decode bench-scale bench-jobs bench-strict-scope bench-densenet-cpu bench-privacy-attacks bench-secagg bench-peers bench-update-norms bench-wan gpu-check wheelhouse wheelhouse-gpu images images-gpu clean

setup: $(STAMP)

# torch first: the CPU build on this machine's disk; a plain `torch` requirement may pull CUDA.
# Two distributions: the site runtime (fedhealth, what hospitals install) and the tools (fedhealth-tools).
$(STAMP): pyproject.toml tools/pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]' -e ./tools
	touch $(STAMP)

# Flower 1.42 beside the kit (CPU torch first, then fedhealth[flower] and the tools), apart from the kit's
# environment: the Flower apps (custom/fedhealth/flower), FLARE's Flower integration in POC and the
# Flower sides of bench-secagg and bench-peers run with $(FLOWER_VENV)/bin/python.
$(FLOWER_VENV)/.installed: pyproject.toml tools/pyproject.toml
	test -x $(FLOWER_VENV)/bin/python || $(PY_BOOT) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/pip install -q --upgrade pip
	$(FLOWER_VENV)/bin/pip install -q torch==2.13.0
	$(FLOWER_VENV)/bin/pip install -q -e '.[flower]' -e ./tools
	touch $@

# The job folders from their family specs (job_specs/*.json; READMEs stay hand-written), then the
# class allow-list provisioning writes into every kit, which follows the jobs' components.
jobs: setup
	$(PY) -m fedhealth_tools.jobs --write
	$(PY) -m fedhealth_tools.provision.allow_list --write

demo: setup
	$(VENV)/bin/fedhealth demo

# The encrypted-aggregation job: POC kits with TenSEAL contexts (project.yml + FLARE's HEBuilder), in a
# workspace of their own (a workspace is never re-provisioned from another project file).
demo-he: setup
	$(PY) -c "from fedhealth_tools.poc.variants import project_with_he as p; p('project.yml', 'workspace/project_he.yml')"
	$(VENV)/bin/fedhealth demo --job jobs/heart_he --project workspace/project_he.yml --workspace workspace/he --results results/demo_he

# The chest X-ray job: the bundled PneumoniaMNIST as four non-IID DICOM sites (converted into each kit),
# FedAvg in POC, the same report as the heart demo; in a workspace of its own.
demo-cxr: setup
	$(VENV)/bin/fedhealth demo --job jobs/cxr_fedavg --workspace workspace/cxr --results results/demo_cxr

# Lint first (fast), the strict docs build (a broken link fails), then every test: unit and the real
# POC federations (marked slow), on two workers (pytest-xdist; a test file stays on one worker, so a
# file's POC federation is shared by its tests as before; each federation has its own ports and folders).
test: setup $(FLOWER_VENV)/.installed
	$(VENV)/bin/ruff check custom tools tests scripts
	$(VENV)/bin/mkdocs build --strict --quiet
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=12

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check custom tools tests scripts
	$(VENV)/bin/ruff format --check custom tools tests scripts

format: setup
	$(VENV)/bin/ruff format custom tools tests scripts
	$(VENV)/bin/ruff check --fix custom tools tests scripts

# The documentation site (docs/, mkdocs.yml) into site/ (git-ignored); strict: a broken link fails.
docs: setup
	$(VENV)/bin/mkdocs build --strict

# The benchmark tables in docs/, written from results/*.json (a unit test fails when they are stale).
docs-tables: setup
	$(PY) scripts/docs_tables.py

bench-heart: setup
	$(PY) scripts/bench_heart.py --out results/bench_heart.json

# Missing data: complete-case (FLamby's 740 rows) vs all 920 patients with the aligned features and
# missingness indicators, federated and pooled, 5 seeds (logistic regression: a few minutes on 2 cores).
bench-ehr: setup
	$(PY) scripts/bench_ehr.py --out results/bench_ehr.json

# XGBoost on heart (all 920 patients, 4 sites) and indo_rct: centralized, local-only, federated histogram and
# FLARE's tree bagging, hyper-parameters by federated cross-validation, 5 seeds, next to the best neural model.
bench-xgboost: setup
	$(PY) scripts/bench_xgboost.py --out results/bench_xgboost.json

bench-faults: setup
	$(PY) scripts/bench_faults.py --out results/bench_faults.json

# FedBuff (asynchronous) against FedAvg when VA Long Beach is 3x or 10x slower: in-process, simulated clock,
# 5 seeds (about 30 s on 2 cores).
bench-fedbuff: setup
	$(PY) scripts/bench_fedbuff.py --out results/bench_fedbuff.json

bench-compression: setup
	$(PY) scripts/bench_compression.py --out results/bench_compression.json

bench-topk-schedule: setup
	$(PY) scripts/bench_topk_schedule.py --out results/bench_topk_schedule.json

bench-dp: setup
	$(PY) scripts/bench_dp.py --out results/bench_dp.json

privacy-utility: setup
	$(VENV)/bin/fedhealth privacy-utility --out results/privacy_utility.json --png results/privacy_utility.png

privacy-utility-cxr: setup
	$(VENV)/bin/fedhealth privacy-utility --dataset cxr --out results/privacy_utility_cxr.json --png results/privacy_utility_cxr.png

# What a compromised server learns from the sites' updates (fedhealth privacy-audit's attacks on cxr_fedavg
# and heart_fedavg): gradient inversion, exact row recovery and membership inference, with no protection,
# DP-SGD at eps 1 and 8, the sum of 4 sites and top-k 1 %. 1,678 s here on 2 shared cores (JSON: seconds).
bench-privacy-attacks: setup
	$(PY) scripts/bench_privacy_attacks.py --out results/bench_privacy_attacks.json --png results/privacy_attacks.png

# SecAgg+ against plain FedAvg, HE and Flower 1.42's SecAgg+ (in its own venv, $(FLOWER_VENV)): POC rounds of
# the heart jobs at 29 / 100k / 1M parameters, and in-process rounds at 4 and 16 sites, 0 and 1 dropout
# (about 15 min on 2 cores; run it alone: these are speed figures).
bench-secagg: setup $(FLOWER_VENV)/.installed
	$(PY) scripts/bench_secagg.py --out results/bench_secagg.json

# Side by side with Flower 1.42 (its own environment, $(FLOWER_VENV)): the shipped heart FedProx and CXR FedAvg
# jobs and a 1M-parameter heart MLP in the kit's POC and in Flower's deployment engine, then the kit's
# in-process simulator against Flower's simulation engine (4 sites, 100 heart shards); accuracy/AUC,
# overhead, time to first round, memory and bytes measured the same way for both (about 25 min, run alone).
bench-peers: setup $(FLOWER_VENV)/.installed
	$(PY) scripts/bench_peers.py --out results/bench_peers.json

# The heart and chest X-ray jobs over emulated WAN links (fedhealth_tools/netlab: each host in its own network
# namespace, production kits, links shaped by netlab.json): none / int8 / top-k 1 % + EF, all sites vs
# min_clients 3 + wait, and a 10x slower site (1200 s here on 2 cores; needs root; run it alone).
bench-wan: setup
	$(PY) scripts/bench_wan.py --out results/bench_wan.json

# The L2 norms of the HE jobs' updates, from which their UpdateGuard max_norm was chosen.
bench-update-norms: setup
	$(PY) scripts/bench_update_norms.py --out results/bench_update_norms.json

bench-he: setup
	$(PY) scripts/bench_he.py --out results/bench_he.json

bench-noniid: setup
	$(PY) scripts/bench_noniid.py --out results/bench_noniid.json

# Non-IID PneumoniaMNIST rows (Dirichlet alpha 0.1 and 1.0, 4 sites, small CNN), merged into the same JSON.
bench-noniid-cxr: setup
	$(PY) scripts/bench_noniid.py --dataset pneumonia --out results/bench_noniid.json

# Chest X-ray: PneumoniaMNIST as DICOM in 4 non-IID sites; centralized, local-only, seven federated
# methods (the winner chosen on validation) and DenseNet-121 rows at 64 px; then the decode throughput
# per transfer syntax (bench-decode). About 35-40 min on 2 idle cores.
bench-cxr: setup bench-decode
	$(PY) scripts/bench_cxr.py --out results/bench_cxr.json

# Decode throughput per transfer syntax (uncompressed, RLE, JPEG 2000, JPEG, JPEG-LS) through the site's
# cold path (read + decode + display chain), on the same images per set (about a minute on 2 idle cores).
bench-decode: setup
	$(PY) scripts/bench_decode.py --out results/bench_decode.json

bench-scale: setup
	$(PY) scripts/bench_scale.py --out results/bench_scale.json

# The strict privacy scope (DPUpdate at one site): update norms, epsilon and accuracy against clip and noise.
bench-strict-scope: setup
	$(PY) scripts/bench_strict_scope.py --out results/bench_strict_scope.json

# Every shipped heart job as it ships, in one real POC federation (the job READMEs quote it).
bench-jobs: setup
	$(PY) scripts/bench_jobs.py --out results/bench_jobs.json

# Offline install: every wheel a site needs (torch CPU build, the fedhealth site runtime, all dependencies,
# at the versions installed here) in wheelhouse/ (git-ignored) with wheelhouse/requirements.lock (sha256
# hashes) for `pip install --no-index --find-links wheelhouse --require-hashes -r ...` (docs/deployment.md).
wheelhouse: setup
	$(PY) scripts/wheelhouse.py --out wheelhouse

# A GPU site's wheelhouse: torch's CUDA build (with its nvidia-* wheels) from this index.
CUDA_INDEX ?= https://download.pytorch.org/whl/cu128
wheelhouse-gpu: setup
	$(PY) scripts/wheelhouse.py --out wheelhouse-gpu --cuda $(CUDA_INDEX)

# Container images (docker/*.Dockerfile), offline from the wheelhouse: a Debian base made with
# debootstrap (cached in workspace/containers/), the runtime, then server, CPU site and admin;
# `images-gpu` adds the GPU site (GPU_BASE: e.g. an nvidia/cuda image with Python 3.11 and venv).
# Needs a Docker daemon (DOCKER_HOST) and, the first time, debootstrap as root. docs/deployment.md.
GPU_BASE ?= fedhealth/debian-base:bookworm
images: wheelhouse
	$(PY) scripts/images.py --report workspace/containers/images.json

images-gpu: wheelhouse wheelhouse-gpu
	$(PY) scripts/images.py --gpu --gpu-base $(GPU_BASE) --report workspace/containers/images.json

clean:
	rm -rf workspace results/demo results/demo_he results/demo_cxr site

# DenseNet-121 training images/s on this machine's CPU (64 px, batch 32, 1 and 2 torch threads).
bench-densenet-cpu: setup
	$(PY) scripts/bench_densenet_cpu.py --out results/densenet_cpu.json

# On a machine with a CUDA GPU: pytest -m gpu, then one DenseNet-121 224 px FedAvg round over four
# synthetic sites (images/s per site, round time, peak GPU memory, device) into results/gpu_check.json.
# Fails with a message where torch sees no CUDA device.
gpu-check: setup
	$(PY) scripts/gpu_check.py --out results/gpu_check.json
