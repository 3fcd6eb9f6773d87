"""deepthink: train recurrent "deep thinking" networks on easy algorithmic problems, test on hard ones.

Public API:
    deepthink.tasks.TASKS / get_task     task registry (prefix_sums, mazes, chess)
    deepthink.models.MODELS / build_model model registry (ff_net, recur_net, dt_net, dt_recall, dt_l)
    deepthink.config.parse_sweep          YAML sweep/run files -> validated configs
"""
__version__ = "0.1.0"
