"""Run any utskick command without installing (not only `send`, despite the name):
python send.py check 2026-12, python send.py send 2026-12 --yes, python send.py publish."""

from utskick.cli import main

if __name__ == "__main__":
    main()
