"""LeRobot v3.0 dataset export/import for the episode store (verified against lerobot 0.4.4).

Usage: ``export_dataset(store, "pick_demos", out_dir)`` writes a folder that ``LeRobotDataset(repo_id, root=out_dir)``
loads offline; ``export_episodes(store, infos, out_dir, label="snapshot-3")`` exports a given list of EpisodeInfo
(annotations as given); ``import_dataset(store, in_dir, "pick_copy")`` returns the new episode ids. Paraphrases,
segments, failure reason and notes travel with the episodes (see annotation_io).
"""

from .export import export_dataset, export_episodes
from .importer import import_dataset, validate_folder
from .layout import CODEBASE_VERSION

__all__ = ["CODEBASE_VERSION", "export_dataset", "export_episodes", "import_dataset", "validate_folder"]
