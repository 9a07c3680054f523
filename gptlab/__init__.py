"""gptlab: raw text to a chat assistant, every stage of the InstructGPT pipeline in one package."""

__version__ = "0.1.0"
