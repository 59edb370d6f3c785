"""dnahnet: tokenizer-free hierarchical DNA language modelling (dnaHNet) as a command-line tool."""

__version__ = "0.1.0"
