"""Operations: each reads the cluster through the adapter, decides with pure logic, then acts."""
