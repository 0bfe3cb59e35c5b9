"""Command-line flags of ARAL-TF, and the per-dataset flagfiles beside this module.

Defaults here are the MNIST values of the paper (Sec. 4.1). A dataset's
flagfile (`flags/<dataset>.flags`) is read before the command line, so its
values replace these defaults and explicit flags replace both.
"""

import os

from absl import flags

from aral_tf.data import ALIASES, npz_image_shape
from aral_tf.distribution import STRATEGIES

FLAGFILE_DIR = os.path.dirname(os.path.abspath(__file__))
DEMO_DATASET = "demo"

# Data.
flags.DEFINE_string("dataset", DEMO_DATASET,
                    "mnist, svhn, cifar10, celeba, imagenet (or their TFDS names), a path to an .npz "
                    "file, demo (a 5,000-digit MNIST sample shipped with the package), or a folder of your own "
                    "images: DIR/pool/ (unlabeled PNG/JPEG files, any size) and DIR/test/ (one subfolder per "
                    "class, or labels.csv of file,label lines); its pool is labeled with --oracle=files.")
flags.DEFINE_string("data_file", None,
                    "Read --dataset from this .npz (x_train, y_train, x_test, y_test) instead of TFDS.")
flags.DEFINE_string("data_dir", None, "TFDS data directory holding the prepared dataset.")
flags.DEFINE_integer("image_size", 32,
                     "With --dataset=DIR: every image is resized (stretched) to SIZE x SIZE pixels. 32 gives the "
                     "cnn networks (--architecture=auto), 28 or less the mlp, more the slower resnet.",
                     lower_bound=1, upper_bound=1024)
flags.DEFINE_enum("channels", "auto", ["auto", "1", "3"],
                  "With --dataset=DIR: 1 (grayscale) or 3 (RGB) converts every image; auto keeps the images' "
                  "own, which must then be the same for all. An alpha channel is dropped.")
flags.DEFINE_list("class_names", [],
                  "With --dataset=DIR: the class names in class-index order (e.g. cat,dog); default: the names "
                  "of DIR/test/'s subfolders or the labels of DIR/test/labels.csv, sorted.")
flags.DEFINE_string("initial_indices", None,
                    "An .npy of pool indices to start labeled; default: --initial_labels drawn uniformly.")

# Bounds of the counts (absl refuses a value outside them with one line, exit code 2): far above any
# run this code can finish, low enough that a typo cannot ask for years of training or terabytes.
MAX_SEED = 2**32 - 1  # what numpy and Keras accept
MAX_LABELS = 10**8  # initial labels and a round's budget
MAX_CYCLES = 10**4
MAX_STEPS = 10**8  # training steps per cycle and between checkpoints
MAX_BATCH = 2**16  # training and evaluation batches
MAX_LATENT_DIM = 2**14
MAX_MC_PASSES = 1000

# Active learning schedule.
flags.DEFINE_integer("initial_labels", 10, "Size of the initial labeled set, drawn uniformly with --seed "
                     f"(1 to {MAX_LABELS:,}).", lower_bound=1, upper_bound=MAX_LABELS)
flags.DEFINE_integer("budget", 10, f"Labels queried per acquisition round (1 to {MAX_LABELS:,}).",
                     lower_bound=1, upper_bound=MAX_LABELS)
flags.DEFINE_integer("cycles", 10, "Acquisition rounds; the model is trained and evaluated cycles + 1 times "
                     f"(0 to {MAX_CYCLES:,}).", lower_bound=0, upper_bound=MAX_CYCLES)
flags.DEFINE_integer("train_steps", 1800, "Training steps per cycle (see --restart_each_cycle for what starts "
                     f"afresh; 1 to {MAX_STEPS:,}).", lower_bound=1, upper_bound=MAX_STEPS)
flags.DEFINE_integer("batch_size", 100,
                     f"Global batch size of each stream (labeled, unlabeled, generated; 1 to {MAX_BATCH:,}).",
                     lower_bound=1, upper_bound=MAX_BATCH)
flags.DEFINE_integer("eval_batch_size", 500, f"Batch size for evaluation and pool scoring (1 to {MAX_BATCH:,}).",
                     lower_bound=1, upper_bound=MAX_BATCH)
flags.DEFINE_integer("seed", 0, "Seed of the initial draw, the initialisation and every training draw "
                     "(0 to 2**32 - 1).", lower_bound=0, upper_bound=MAX_SEED)
flags.DEFINE_string("output_dir", None,
                    "Directory of the run; default runs/<dataset>-<time>. Given an existing run, continues it.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_enum("oracle", "simulated", ["simulated", "files"],
                  "Who labels the queries: simulated (the dataset's labels) or files (a person: queries are "
                  "written to OUTPUT_DIR/queries/ROUND/, answers read from labels.csv there).")
flags.DEFINE_list("restart_each_cycle", [],
                  "Networks of ARAL (encoder, generator, discriminator, sampler) that start each cycle after the "
                  "first from their weights at the start of the run, with fresh optimizer state; the rest are "
                  "warm-started. Empty: all warm-started. For the other methods the names mean the networks "
                  "in the same role: discriminator = every classifier and GAN discriminator, generator = G "
                  "and VAAL's decoder.")
flags.DEFINE_integer("checkpoint_every", 500, "Training steps between checkpoints (also one at each cycle's end; "
                     f"1 to {MAX_STEPS:,}).", lower_bound=1, upper_bound=MAX_STEPS)
flags.DEFINE_bool("export", True,
                  "At the end, export the classifier and the sampler as SavedModels to OUTPUT_DIR/export "
                  "(TF Serving layout). OUTPUT_DIR/model.keras is saved either way.")

# Method (benchmarks.compare runs several side by side).
flags.DEFINE_string("method", "aral",
                    "Active learning method: aral (default), vaal, random, entropy, bald, coreset, full, "
                    "aral_random, aral_no_encoder, aral_no_cotrain (see README, 'Baselines and ablations').")
flags.DEFINE_integer("mc_passes", 10, "Stochastic (MC dropout) passes per image for BALD's mutual information "
                     f"(2 to {MAX_MC_PASSES:,}).", lower_bound=2, upper_bound=MAX_MC_PASSES)

# Model (paper Sec. 4.1-4.2).
flags.DEFINE_enum("architecture", "auto", ["auto", "mlp", "cnn", "resnet"],
                  "Network family; auto: mlp up to 28x28 pixels, cnn up to 32x32, resnet above.")
flags.DEFINE_float("width", 1.0, "Width multiplier for every layer of E, G and D.")
flags.DEFINE_integer("latent_dim", 100, f"Latent dimension d_z (1 to {MAX_LATENT_DIM:,}).", lower_bound=1,
                     upper_bound=MAX_LATENT_DIM)
flags.DEFINE_float("input_noise_std", 0.6,
                  "Gaussian noise on D's input, images in [-1, 1] (0.6 = Salimans et al.'s 0.3 on [0, 1]).")
flags.DEFINE_float("hidden_noise_std", 0.5, "Gaussian noise between the layers of the MLP D.")
flags.DEFINE_float("dropout_rate", 0.5, "Dropout between the blocks of the convolutional D.")
flags.DEFINE_float("lambda_gan", 1.0, "lambda_gan of Eqs. 11-12.")
flags.DEFINE_float("lambda_cls", 1.0, "lambda_cls of Eq. 12.")
flags.DEFINE_float("lambda_trd", 0.001, "lambda_trd of Eq. 5.")
flags.DEFINE_float("lambda_adv", 0.001, "lambda_adv of Eq. 5.")
flags.DEFINE_float("beta", 1.0, "beta of the beta-VAE (Eq. 5).")
flags.DEFINE_float("feature_matching", 1.0, "Weight of feature matching in G's GAN loss.")
flags.DEFINE_float("class_feature_matching", 0.0,
                   "Weight of class-conditional feature matching in G's GAN loss (real images weighted by "
                   "their labels, C(x) for unlabeled ones).")
flags.DEFINE_float("generator_gan", 1.0, "Weight of Eq. 7 (G's adversarial term) in G's GAN loss.")
flags.DEFINE_float("generated_cls", 1.0, "Weight of Eq. 9's generated-image term in C's loss.")
flags.DEFINE_enum("selection", "lowest", ["lowest", "class_balanced", "typiclust", "lowest_in_clusters"],
                  "ARAL's query rule (--method=aral only): lowest, the budget lowest S(E(x, C(x))) (the paper); "
                  "class_balanced, those lowest scores taken round by round over C's predicted classes; typiclust, "
                  "the most typical image of each pool cluster (k-means of D's features) that holds no label yet; "
                  "lowest_in_clusters, the lowest S of each such cluster of E's codes.")
flags.DEFINE_float("lr_encoder_generator", 1e-3, "Adam learning rate of E and G.")
flags.DEFINE_float("lr_discriminator", 3e-3, "Adam learning rate of D.")
flags.DEFINE_float("lr_sampler", 3e-3, "Adam learning rate of S.")
flags.DEFINE_float("lr_classifier", 1e-3,
                   "Adam learning rate of the baselines' classifiers trained without a GAN (random, entropy, "
                   "bald, coreset, full, vaal, aral_no_cotrain); ARAL's C is D and takes --lr_discriminator.")
flags.DEFINE_float("adam_beta_1", 0.5, "Adam beta_1 of every optimizer.")
flags.DEFINE_float("classifier_average", 0.999,
                   "Momentum of the moving average of D's weights used for evaluation and acquisition "
                   "(0 uses the last weights).")

# Execution.
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "tf.distribute strategy: auto (mirrored when several GPUs are visible, else default), "
                  "default (one device), mirrored (all local GPUs or CPUs), multi_worker (the workers of the "
                  "TF_CONFIG cluster) or tpu (the TPU at --tpu).")
flags.DEFINE_string("tpu", None, "With --strategy=tpu: the TPU's grpc:// address, Cloud TPU name, or local.")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA (one replica only).")
flags.DEFINE_bool("mixed_precision", False,
                  "Compute in float16 with float32 weights and loss scaling (mixed_float16; needs a GPU).")
flags.DEFINE_string("tensorboard_dir", None,
                    "Write TensorBoard summaries here: losses, test accuracy, generated images, "
                    "hyperparameters.")

# The label-free stage, the initial set and how Eq. 9 and S read their inputs (docs/design.md).
flags.DEFINE_integer("pretrain_steps", 0,
                     "Label-free steps of ARAL's unsupervised game on the pool before the first query; every cycle "
                     "then starts from those weights (--restart_each_cycle restarts to them). 0: none (the paper). "
                     f"0 to {MAX_STEPS:,}.", lower_bound=0, upper_bound=MAX_STEPS)
flags.DEFINE_list("pretrain_networks", ["encoder", "generator", "discriminator"],
                  "The networks whose pretrained weights the cycles start from (and --restart_each_cycle "
                  "restarts to); the others start from their initial weights as without pretraining.")
flags.DEFINE_string("pretrain_cache_dir", None,
                    "Keep pretraining stages here, one folder per pool, seed, networks and settings, so that "
                    "other runs (other methods, seeds of a comparison) reuse them; default OUTPUT_DIR/pretrain. "
                    "Delete a folder (or the whole directory) to clear it.")
flags.DEFINE_enum("initial_selection", "random", ["random", "typiclust", "typiclust_features"],
                  "The initial labeled set, for every method alike: random (uniform with --seed, the paper), "
                  "typiclust (typical and diverse pool images by TypiClust on their pixels) or typiclust_features "
                  "(TypiClust on the features of an ARAL model's D after --pretrain_steps); chosen without labels.")
flags.DEFINE_float("generated_cls_confidence", 0.0,
                   "Eq. 9 gate: C learns only from the generated images it already reads as their conditioning "
                   "label with probability above this (0: from all, the paper).", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_enum("sampler_conditioning", "label", ["label", "prediction"],
                  "What the codes S reads are conditioned on for labeled images: their label (the paper) or C's "
                  "prediction, as for unlabeled images and at query time (then S cannot tell the sets apart by the "
                  "label's format).")

FLAGS = flags.FLAGS

# Flags of this module that a resumed run may change; every other one is part of the run's identity
# (stored in OUTPUT_DIR/run.json) and must keep its value. Add a new flag here only if changing it
# midway cannot change which images get labeled or what the model learns.
MAY_CHANGE_ON_RESUME = ("cycles", "progress", "output_dir", "data_dir", "checkpoint_every", "export",
                        "tensorboard_dir", "pretrain_cache_dir")


def flagfile_for(dataset):
    """Path of the flagfile holding `dataset`'s defaults, or None for a user's .npz."""
    if dataset == DEMO_DATASET:
        name = DEMO_DATASET
    elif dataset in ALIASES:
        name = ALIASES[dataset]
    else:
        return None
    return os.path.join(FLAGFILE_DIR, f"{name}.flags")


# Flags a user's .npz keeps at the library defaults when it takes a built-in recipe: the schedule (its
# pool is its own) and the initial set (TypiClust on pixels is measured on MNIST only).
RECIPE_EXCEPTIONS = ("initial_labels", "budget", "cycles", "initial_selection")


def nearest_recipe(image_shape):
    """The built-in dataset whose recipe suits images of `image_shape` (H, W, C): mnist for one channel,
    cifar10 for colour images up to 32x32, celeba for larger ones."""
    height, width, channels = image_shape
    if channels == 1:
        return "mnist"
    return "cifar10" if max(height, width) <= 32 else "celeba"


def recipe_arguments(dataset):
    """(recipe name, its flag arguments) for a user's .npz at `dataset`: the nearest built-in dataset's
    flagfile without comments and RECIPE_EXCEPTIONS; None for other datasets or an unreadable file."""
    if not dataset.endswith(".npz"):
        return None
    image_shape = npz_image_shape(dataset)
    if image_shape is None:
        return None
    name = nearest_recipe(image_shape)
    with open(os.path.join(FLAGFILE_DIR, f"{name}.flags"), encoding="utf-8") as stream:
        lines = [line.strip() for line in stream]
    return name, [line for line in lines if line.startswith("--")
                  and line[2:].split("=", 1)[0] not in RECIPE_EXCEPTIONS]


def _dataset_arguments(dataset):
    """The flag lines the chosen dataset puts before the command line (its flagfile or its recipe)."""
    flagfile = flagfile_for(dataset)
    if flagfile and os.path.exists(flagfile):
        with open(flagfile, encoding="utf-8") as stream:
            return [line.strip() for line in stream]
    recipe = recipe_arguments(dataset)
    return recipe[1] if recipe else []


def given_explicitly(name, values=FLAGS):
    """True when --name was given on the command line (or in a user's --flagfile), not only by the chosen
    dataset's flagfile or recipe (absl counts every time a flag is parsed)."""
    by_dataset = sum(line.startswith(f"--{name}=") for line in _dataset_arguments(values.dataset))
    return values[name].present > by_dataset


def with_dataset_flagfile(argv):
    """Puts the chosen dataset's flagfile right after the program name, so explicit flags win."""
    dataset = DEMO_DATASET
    for position, argument in enumerate(argv[1:], start=1):
        if argument.startswith("--dataset="):
            dataset = argument.split("=", 1)[1]
        elif argument == "--dataset" and position + 1 < len(argv):
            dataset = argv[position + 1]
    flagfile = flagfile_for(dataset)
    if flagfile is None:
        recipe = recipe_arguments(dataset)
        return [argv[0]] + (recipe[1] if recipe else []) + list(argv[1:])
    return [argv[0], f"--flagfile={flagfile}"] + list(argv[1:])
