"""The one exception of the HF bridge: its message is a single line naming the file / tensor and the fix."""


class CheckpointFormatError(ValueError):
  """A Hugging Face checkpoint that cannot be read or written as asked (one-line message)."""
