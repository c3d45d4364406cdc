"""Base config blocks shared by every run config (each config file has get_config())."""
import ml_collections
from ml_collections import config_dict

from t2t.data import objectives


def objective(name: str = "span_corruption", **arguments) -> ml_collections.ConfigDict:
    """The `data.objective` block: the objective's name and a field for every argument any
    objective takes (t2t.data.objectives.ARGUMENTS); None keeps the objective's default, so
    `--config.data.objective.noise_density=0.5` works whichever objective is named."""
    block = {k: config_dict.placeholder(float) for k in objectives.ARGUMENTS}
    block = ml_collections.ConfigDict(dict(name=name, **block))
    block.update(arguments)
    return block


def base() -> ml_collections.ConfigDict:
    """Every field a run reads, with defaults. Override with --config.a.b=value."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        init_from="",                      # a t2t checkpoint dir or converted HF dir to start from
        model=ml_collections.ConfigDict(dict(
            name="tiny",                   # a t2t.models.variants name
            overrides=ml_collections.ConfigDict(dict()),   # model fields changed from that variant
        )),
        data=ml_collections.ConfigDict(dict(
            # What the run reads: a corpus through an objective (t2t/tasks/pretraining.py:
            # c4, builtin, web_raw_c4_clean, web_raw_c4_noclean, tfds:NAME, a file pattern)...
            corpus="builtin",
            objective=objective("span_corruption"),
            # ... or a registered task or mixture (glue, glue_rte, ...; corpus must be "").
            task="",
            split="train",
            eval_split="validation",
            inputs_length=128,
            targets_length=0,               # 0 = what the objective needs for inputs_length
            batch_size=16,                  # global batch (split over processes)
            pack=False,
            converter="auto",               # auto (the model's) | enc_dec | lm | prefix_lm | enc_only
            data_dir="",                    # default $T2T_DATA_DIR
            vocab="",                       # SentencePiece model overriding the task's vocabulary
            num_workers=0,
            num_shards=0,                   # fixed data shards (0 = one per process); fixing it makes
                                            # batches independent of the process count
        )),
        train=ml_collections.ConfigDict(dict(
            num_steps=1000,
            log_every=50,
            eval_every=0,                   # 0 = no periodic eval
            eval_steps=10,
            num_microbatches=1,
            z_loss=1e-4,
            label_smoothing=0.0,
        )),
        optimizer=ml_collections.ConfigDict(dict(
            name="adafactor",
            schedule="rsqrt",
            learning_rate=1.0,
            warmup_steps=10_000,
            decay_steps=0,
            end_value=0.0,
            grad_clip=0.0,
            weight_decay=0.0,
        )),
        checkpoint=ml_collections.ConfigDict(dict(
            every_steps=1000,
            keep=3,
            keep_every=0,                   # also keep every K-th step (0 = off)
            async_save=True,
        )),
        mesh=ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1)),
        eval=ml_collections.ConfigDict(dict(   # task evaluation every train.eval_every steps
            tasks="",                       # comma-separated tasks or glue / super_glue ("" = none)
            split="validation",
            method="decode",                # decode (greedy, as T5) | rank (score every label string)
            max_examples=0,                 # first N examples of each split (0 = all)
            batch_size=32,
            best_metric="",                 # metric keeping <workdir>/best/, e.g. glue_rte/accuracy;
                                            # "" = the benchmark average, else the first task's first metric
        )),
    ))


def t5_pretrain(model_name: str, objective_name: str = "span_corruption") -> ml_collections.ConfigDict:
    """T5's pretraining setup: C4, batch 128, 512/114, 2^19 steps, Adafactor rsqrt (warmup 10^4)."""
    cfg = base()
    cfg.model.name = model_name
    cfg.data.corpus = "c4"
    cfg.data.objective = objective(objective_name)
    cfg.data.inputs_length, cfg.data.targets_length = 512, 0  # span corruption: 114
    cfg.data.batch_size = 128
    cfg.data.pack = True
    cfg.train.num_steps = 2**19
    cfg.train.log_every = 100
    cfg.train.eval_every = 10_000
    cfg.checkpoint.every_steps = 10_000
    return cfg
