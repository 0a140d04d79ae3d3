// The reference side of tests/registry/test_merkle_batch.py: OpenZeppelin's own StandardMerkleTree
// (@openzeppelin/merkle-tree, pinned in package.json) builds, dumps, loads and verifies what the
// Python test sends on stdin and answers on stdout, so both implementations meet the same inputs.
//
// stdin:  {"build": [{"name", "encoding", "values", "multiproofs": [[index, ...], ...]}],
//          "check": [{"name", "dump", "proofs": [[hex, ...]], "multiproofs": [{leaves, proof, proofFlags}]}]}
// stdout: {"build": {name: {"ok", "root", "proofs" (by index), "proofsByValue",
//                           "dump" (JSON.stringify of tree.dump()), "multiproofs"} or {"ok", "error"}},
//          "check": {name: {"ok", "verified", "staticVerified", "multiproofVerified"} or {"ok", "error"}}}
import { readFileSync } from 'node:fs';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';

// A refusal is an answer too: {ok: false, error} instead of the result.
function attempt(work) {
  try {
    return { ok: true, ...work() };
  } catch (error) {
    return { ok: false, error: String(error) };
  }
}

const request = JSON.parse(readFileSync(0, 'utf8'));
const answer = { build: {}, check: {} };

for (const { name, encoding, values, multiproofs = [] } of request.build ?? []) {
  answer.build[name] = attempt(() => {
    const tree = StandardMerkleTree.of(values, encoding);
    return {
      root: tree.root,
      proofs: values.map((_, i) => tree.getProof(i)),
      proofsByValue: values.map(value => tree.getProof(value)),
      dump: JSON.stringify(tree.dump()),
      multiproofs: multiproofs.map(indices => attempt(() => tree.getMultiProof(indices))),
    };
  });
}

for (const { name, dump, proofs = [], multiproofs = [] } of request.check ?? []) {
  answer.check[name] = attempt(() => {
    const tree = StandardMerkleTree.load(dump);
    const values = dump.values.map(entry => entry.value);
    return {
      verified: proofs.map((proof, i) => tree.verify(i, proof)),
      staticVerified: proofs.map((proof, i) =>
        StandardMerkleTree.verify(tree.root, dump.leafEncoding, values[i], proof),
      ),
      multiproofVerified: multiproofs.map(multiproof =>
        StandardMerkleTree.verifyMultiProof(tree.root, dump.leafEncoding, multiproof),
      ),
    };
  });
}

process.stdout.write(JSON.stringify(answer));
