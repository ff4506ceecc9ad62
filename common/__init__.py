"""What every stage needs and no stage owns: errors, the CLI runner, readers and bundled data, vector math."""
