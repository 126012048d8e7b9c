"""`python cli.py extract ...` is `fstore extract ...`, for users of the classic run_extraction.py style."""

from featurestore.cli import main

if __name__ == "__main__":
    main()
