"""Run the utskick CLI without installing: python send.py check issues/2026-11.yaml"""

from utskick.cli import main

if __name__ == "__main__":
    main()
