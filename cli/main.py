import click

@click.group()
def main():
    """tcscodec."""
