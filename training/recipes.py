"""Training recipes as plain data. Flags given on the command line override the recipe's values.

``default`` is sized for a 2-core CPU (a few minutes); ``full`` is the longer recipe for a GPU or patience.
"""
RECIPES = {
    "default": {"epochs": 2, "batch_size": 32, "lr": 1e-4, "max_length": 128, "hard_negatives": 0,
                "temperature": 0.05},
    "full": {"epochs": 8, "batch_size": 32, "lr": 5e-5, "max_length": 256, "hard_negatives": 1,
             "temperature": 0.05},
}
