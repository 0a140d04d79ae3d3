// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IModelRegistry
/// @notice Append-only registry of medical AI model checkpoints. A checkpoint is identified by the
/// SHA-256 digest of its exact file bytes. Each record anchors the checkpoint's evaluation accuracy
/// (basis points) together with the digest of the test set it was measured on, the digest of its
/// model card and the digest of the checkpoint it was derived from.
/// @dev Only what an on-chain check needs lives in storage (who registered, when, accuracy,
/// revocation). The test-set, model-card and parent digests live in the `ModelRegistered` event,
/// whose block number is kept in storage so that clients fetch it with one exact log query.
/// Lineage (the versions that name a parent) is the `ModelRegistered` log filtered on its indexed
/// `parent` topic.
interface IModelRegistry {
    /// @notice Roles an account can hold besides the single admin.
    enum Role {
        None,
        Registrar,
        Revoker,
        Evaluator
    }

    /// @notice A record as kept in storage. `registrant == address(0)` means "no such record" and
    /// `revocationReason == 0` means "not revoked": a timestamp is never used as a sentinel, since a
    /// uint40 time could wrap to 0. A checkpoint revoked as a batch leaf (`revokeLeaf`) has no
    /// registrant but its revocation fields, and `registeredBlock` set to the revocation's block.
    struct Record {
        address registrant;
        uint40 registeredAt; // block timestamp of the registration
        uint40 registeredBlock; // block holding the ModelRegistered event with the digests
        uint16 accuracyBps; // 0-10 000 basis points on the anchored test set
        uint40 revokedAt; // time of the revocation (only meaningful when revocationReason != 0)
        uint40 revokedBlock; // block holding the ModelRevoked event
        uint8 revocationReason; // 0 = not revoked; codes documented at `revoke`
        bytes32 replacement; // 0 = no replacement named
    }

    /// @notice A batch as kept in storage: one slot. `registrant == address(0)` means "no such
    /// batch" and `revocationReason == 0` means "not revoked". The leaf count and the manifest's
    /// digest are in the `BatchRegistered` event, found through `registeredBlock`: no on-chain
    /// check needs them, and a second slot would cost 22 100 gas per batch.
    struct Batch {
        address registrant;
        uint40 registeredAt; // block timestamp of the registration
        uint40 registeredBlock; // block holding the BatchRegistered event
        uint8 revocationReason; // 0 = not revoked; codes documented at `revoke`
    }

    /// @notice One checkpoint of a batch: a leaf of its Merkle tree, hashed as OpenZeppelin's
    /// StandardMerkleTree hashes `abi.encode(digest, accuracyBps, testSetDigest, cardDigest,
    /// parent)`: keccak256(bytes.concat(keccak256(abi.encode(...)))). Fields as in `register`.
    struct Leaf {
        bytes32 digest;
        uint16 accuracyBps;
        bytes32 testSetDigest;
        bytes32 cardDigest;
        bytes32 parent; // 0 = first version; not checked on chain for a batched leaf
    }

    /// @notice An evaluator's attestation of a checkpoint as kept in storage: one slot.
    /// `attestedAt == 0` means "none"; `revokedAt != 0` means withdrawn. The test-set and report
    /// digests are in the `AttestationMade` event, found through `attestedBlock`.
    struct Attestation {
        uint40 attestedAt; // block timestamp of the attestation
        uint40 attestedBlock; // block holding the AttestationMade event with the digests
        uint16 accuracyBps; // the evaluator's own measurement, 0-10 000 basis points
        uint40 revokedAt; // 0 = standing
    }

    /// @notice The latest root of an audit log anchored by `service` (the anchoring account):
    /// the log's first `size` entries hash to `root` (RFC 9162 Merkle tree hash). One slot for
    /// size and times, one for the root; earlier roots stay readable through `auditRoot`.
    struct AuditAnchor {
        uint64 size;
        uint40 anchoredAt;
        uint40 anchoredBlock;
        bytes32 root;
    }

    // ----------------------------------------------------------------------------------------
    // Events
    // ----------------------------------------------------------------------------------------

    /// @notice A checkpoint was registered.
    /// @param digest SHA-256 of the checkpoint file bytes.
    /// @param registrant The registrar that anchored it.
    /// @param parent Digest of the checkpoint it was derived from; 0 = first version.
    /// @param accuracyBps Accuracy in basis points (0-10 000) on the test set `testSetDigest`.
    /// @param testSetDigest SHA-256 of the canonical test split the accuracy was measured on.
    /// @param cardDigest SHA-256 of the canonical model card JSON.
    /// @param registeredAt Block timestamp, so that history needs no block lookups.
    event ModelRegistered(
        bytes32 indexed digest,
        address indexed registrant,
        bytes32 indexed parent,
        uint16 accuracyBps,
        bytes32 testSetDigest,
        bytes32 cardDigest,
        uint40 registeredAt
    );

    /// @notice A checkpoint was revoked (one-way).
    /// @param digest The revoked checkpoint.
    /// @param revoker The account that revoked it (a revoker or the registrant).
    /// @param replacement A registered, valid checkpoint to use instead; 0 = none named.
    /// @param reason Reason code (see `revoke`).
    /// @param revokedAt Block timestamp of the revocation.
    event ModelRevoked(
        bytes32 indexed digest,
        address indexed revoker,
        bytes32 indexed replacement,
        uint8 reason,
        uint40 revokedAt
    );

    /// @notice A Merkle root anchoring `count` checkpoints was registered.
    /// @param root The root of the batch's StandardMerkleTree (leaves: see `Leaf`).
    /// @param registrant The registrar that anchored it.
    /// @param count The number of leaves, as the registrant declared it.
    /// @param manifestDigest SHA-256 of the tree's standard-v1 JSON dump (the manifest).
    /// @param registeredAt Block timestamp.
    event BatchRegistered(
        bytes32 indexed root,
        address indexed registrant,
        uint32 count,
        bytes32 manifestDigest,
        uint40 registeredAt
    );

    /// @notice A whole batch was revoked (one-way): none of its leaves is valid through it.
    event BatchRevoked(bytes32 indexed root, address indexed revoker, uint8 reason, uint40 revokedAt);

    /// @notice One checkpoint of batch `root` was revoked (one-way, in every batch and for
    /// `register`).
    event BatchLeafRevoked(
        bytes32 indexed root,
        bytes32 indexed digest,
        address indexed revoker,
        uint8 reason,
        uint40 revokedAt
    );

    /// @notice `evaluator` attested its own measurement of checkpoint `digest`.
    /// @param testSetDigest The test set it measured on: the anchored one, or its own.
    /// @param reportDigest SHA-256 of the evaluation report; 0 = none published.
    event AttestationMade(
        bytes32 indexed digest,
        address indexed evaluator,
        uint16 accuracyBps,
        bytes32 testSetDigest,
        bytes32 reportDigest,
        uint40 attestedAt
    );

    /// @notice `evaluator` withdrew its attestation of `digest`.
    event AttestationRevoked(bytes32 indexed digest, address indexed evaluator, uint40 revokedAt);

    /// @notice `service` anchored the root of its audit log's first `size` entries.
    event AuditLogAnchored(address indexed service, uint64 indexed size, bytes32 root, uint40 anchoredAt);

    /// @notice `registrar` cancelled its signed-registration nonce `nonce` (see `registerBySig`).
    event NonceCancelled(address indexed registrar, uint256 nonce);

    /// @notice `account` was given `role` by `sender` (the admin).
    event RoleGranted(Role indexed role, address indexed account, address indexed sender);

    /// @notice `account` lost `role`, removed by `sender` (the admin, or the account itself).
    event RoleRemoved(Role indexed role, address indexed account, address indexed sender);

    /// @notice The admin proposed `pendingAdmin` as successor; it takes effect on acceptance.
    event AdminTransferStarted(address indexed admin, address indexed pendingAdmin);

    /// @notice `newAdmin` accepted and is now the admin.
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);

    // ----------------------------------------------------------------------------------------
    // Errors
    // ----------------------------------------------------------------------------------------

    /// @notice `account` lacks `role` for this call.
    error ModelRegistryMissingRole(address account, Role role);
    /// @notice Only the admin may call this.
    error ModelRegistryNotAdmin(address account);
    /// @notice Only the pending admin may accept the transfer.
    error ModelRegistryNotPendingAdmin(address account);
    /// @notice The zero address cannot hold a role or be admin.
    error ModelRegistryZeroAddress();
    /// @notice The zero digest identifies nothing.
    error ModelRegistryZeroDigest();
    /// @notice `digest` is already registered, by `registrant`.
    error ModelRegistryAlreadyRegistered(bytes32 digest, address registrant);
    /// @notice No record exists for `digest`.
    error ModelRegistryUnknownModel(bytes32 digest);
    /// @notice `accuracyBps` exceeds 10 000 basis points.
    error ModelRegistryAccuracyOutOfRange(uint16 accuracyBps);
    /// @notice An accuracy needs the digest of the test set it was measured on.
    error ModelRegistryZeroTestSetDigest();
    /// @notice The model card digest is missing.
    error ModelRegistryZeroCardDigest();
    /// @notice `parent` is not registered (or is the checkpoint itself).
    error ModelRegistryInvalidParent(bytes32 digest, bytes32 parent);
    /// @notice `digest` was already revoked at `revokedAt`.
    error ModelRegistryAlreadyRevoked(bytes32 digest, uint40 revokedAt);
    /// @notice `reason` is not a known revocation code.
    error ModelRegistryInvalidReason(uint8 reason);
    /// @notice `replacement` is not a registered, valid checkpoint other than `digest`.
    error ModelRegistryInvalidReplacement(bytes32 digest, bytes32 replacement);
    /// @notice `account` may not revoke `digest`: it is neither a revoker nor its registrant.
    error ModelRegistryNotAllowedToRevoke(address account, bytes32 digest);

    /// @notice A batch needs at least one leaf.
    error ModelRegistryEmptyBatch();
    /// @notice No batch with `root` is registered.
    error ModelRegistryUnknownBatch(bytes32 root);
    /// @notice A batch with `root` is already registered, by `registrant`.
    error ModelRegistryBatchAlreadyRegistered(bytes32 root, address registrant);
    /// @notice The proof does not show the leaf of `digest` under `root`.
    error ModelRegistryInvalidProof(bytes32 root, bytes32 digest);
    /// @notice Batch `root` was revoked, with reason code `reason`.
    error ModelRegistryBatchRevoked(bytes32 root, uint8 reason);
    /// @notice `account` may not revoke batch `root` or its leaves: it is neither a revoker nor
    /// the batch's registrant.
    error ModelRegistryNotAllowedToRevokeBatch(address account, bytes32 root);

    /// @notice `evaluator` is the registrant of `digest`: a registrant cannot attest its own model.
    error ModelRegistrySelfAttestation(bytes32 digest, address evaluator);
    /// @notice `evaluator` already has a standing attestation of `digest`, made at `attestedAt`.
    error ModelRegistryAlreadyAttested(bytes32 digest, address evaluator, uint40 attestedAt);
    /// @notice `evaluator` has no standing attestation of `digest`.
    error ModelRegistryNoAttestation(bytes32 digest, address evaluator);
    /// @notice `digest` was revoked at `revokedAt`: it cannot be attested.
    error ModelRegistryRevokedModel(bytes32 digest, uint40 revokedAt);
    /// @notice An audit anchor must grow the log: `size` is not above `anchoredSize`, the size
    /// `service` anchored last.
    error ModelRegistryAuditLogNotGrowing(address service, uint64 size, uint64 anchoredSize);
    /// @notice The signed registration expired at `deadline` (a block timestamp); it is `now`.
    error ModelRegistryExpiredSignature(uint256 deadline, uint256 now);
    /// @notice `nonce` is not `registrar`'s next nonce in its lane (`expected`): the request was
    /// already used, cancelled, or is out of order.
    error ModelRegistryInvalidNonce(address registrar, uint256 nonce, uint256 expected);
    /// @notice The signature is not `registrar`'s over this registration, domain and nonce.
    /// `recovered` is the address an ECDSA signature recovers to (0 when malformed or when
    /// `registrar` is a contract that refused it through ERC-1271).
    error ModelRegistryInvalidSigner(address registrar, address recovered);

    // ----------------------------------------------------------------------------------------
    // Writes
    // ----------------------------------------------------------------------------------------

    /// @notice Anchor a checkpoint. Registrar only.
    /// @param digest SHA-256 of the checkpoint file bytes (non-zero, not yet registered).
    /// @param accuracyBps Accuracy in basis points, 0-10 000.
    /// @param testSetDigest Digest of the test set the accuracy was measured on (non-zero).
    /// @param cardDigest Digest of the canonical model card (non-zero).
    /// @param parent Digest of a registered parent checkpoint; 0 = first version.
    function register(
        bytes32 digest,
        uint16 accuracyBps,
        bytes32 testSetDigest,
        bytes32 cardDigest,
        bytes32 parent
    ) external;

    /// @notice Revoke a checkpoint, for good. A revoker or the checkpoint's registrant only.
    /// @param digest The checkpoint to revoke.
    /// @param reason 1 superseded, 2 safety issue, 3 performance degradation, 4 data problem,
    /// 5 security compromise, 6 regulatory, 7 registered in error, 255 other. 0 is invalid.
    /// @param replacement A registered, unrevoked checkpoint to use instead; 0 = none.
    function revoke(bytes32 digest, uint8 reason, bytes32 replacement) external;

    /// @notice Anchor a batch of checkpoints by the root of their Merkle tree. Registrar only.
    /// A leaf is valid through the batch while the batch and the leaf's digest are unrevoked and
    /// the digest has no single record: a single registration always wins over a batched leaf.
    /// @param root Root of the StandardMerkleTree of the batch's leaves (non-zero, new).
    /// @param count Number of leaves (non-zero); recorded in the event, not checked.
    /// @param manifestDigest SHA-256 of the tree's standard-v1 dump (non-zero).
    function registerBatch(bytes32 root, uint32 count, bytes32 manifestDigest) external;

    /// @notice Revoke a whole batch, for good. A revoker or the batch's registrant only.
    /// @param reason A revocation code as in `revoke`.
    function revokeBatch(bytes32 root, uint8 reason) external;

    /// @notice Revoke one checkpoint of a batch, for good: its digest is then valid in no batch
    /// and can never be registered on its own. A revoker or the batch's registrant only; a
    /// digest with a single record is revoked with `revoke` instead.
    /// @param reason A revocation code as in `revoke`.
    function revokeLeaf(bytes32 root, Leaf calldata leaf, bytes32[] calldata proof, uint8 reason)
        external;

    /// @notice Anchor `record` on behalf of `registrar`, who signed it offline (EIP-712); anyone
    /// may send it and pay the gas. The record is registered exactly as `register` would for
    /// `registrar` (who must hold the Registrar role; it is the record's registrant).
    /// Typed data, domain `eip712Domain()` (name "ModelRegistry", version "1", this chain, this
    /// contract): `Registration(bytes32 digest,uint16 accuracyBps,bytes32 testSetDigest,
    /// bytes32 cardDigest,bytes32 parent,address registrar,uint256 nonce,uint256 deadline)`.
    /// @param record The record's fields, as in `register` (the `Leaf` struct carries them).
    /// @param nonce `registrar`'s next nonce in one of its lanes: (lane << 64) | sequence, as
    /// `nonces(registrar, lane)` returns it; lanes let requests be signed and sent in parallel.
    /// @param deadline Last block timestamp at which the request is accepted.
    /// @param signature 65-byte ECDSA (r, s, v) with low s, or for a contract `registrar` any
    /// bytes its ERC-1271 `isValidSignature` accepts.
    function registerBySig(
        Leaf calldata record,
        address registrar,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Cancel the caller's signed-registration nonce `nonce`, which must be its next
    /// one in its lane: a request signed with it can no longer be sent.
    function cancelNonce(uint256 nonce) external;

    /// @notice Attest your own measurement of registered, unrevoked checkpoint `digest`.
    /// Evaluator only; not its registrant; one standing attestation per evaluator and checkpoint
    /// (a withdrawn one may be replaced). Checkpoints registered in a batch cannot be attested.
    /// @param accuracyBps The accuracy measured, 0-10 000 basis points.
    /// @param testSetDigest The test set measured on (non-zero): the anchored one, or another.
    /// @param reportDigest SHA-256 of the evaluation report; 0 = none.
    function attest(bytes32 digest, uint16 accuracyBps, bytes32 testSetDigest, bytes32 reportDigest)
        external;

    /// @notice Withdraw the caller's standing attestation of `digest`.
    function revokeAttestation(bytes32 digest) external;

    /// @notice Anchor the root of the caller's audit log: its first `size` entries have RFC 9162
    /// Merkle tree hash `root`. Anyone may anchor; anchors are kept per anchoring account, which
    /// verifiers pin. `size` must exceed the caller's last anchored size.
    function anchorAuditLog(uint64 size, bytes32 root) external;

    /// @notice Give `account` a role. Admin only; granting a role already held is a no-op.
    function grantRole(Role role, address account) external;

    /// @notice Take a role from `account`. Admin only; removing a role not held is a no-op.
    function removeRole(Role role, address account) external;

    /// @notice Give up a role held by the caller.
    function renounceRole(Role role) external;

    /// @notice Propose a new admin (step one of two). Proposing the zero address cancels.
    function transferAdmin(address newAdmin) external;

    /// @notice Accept the admin role (step two of two). Pending admin only.
    function acceptAdmin() external;

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @notice The stored record of `digest`; reverts with ModelRegistryUnknownModel if none.
    function getRecord(bytes32 digest) external view returns (Record memory);

    /// @notice The record of `digest` (all fields zero if none), the number of the block whose
    /// state answered and the chain id, so a verifier learns in one call what it checked, as of
    /// when, and on which chain; and the hash of the registration's block, so a verifier that
    /// kept the registration's event can tell that a reorg has not replaced it. That hash is
    /// zero when the EVM cannot see it: for the answering block itself, for a block more than
    /// 256 blocks back, and when there is no record.
    function lookup(bytes32 digest)
        external
        view
        returns (
            Record memory record,
            uint256 blockNumber,
            uint256 chainId,
            bytes32 registeredBlockHash
        );

    /// @notice Whether `digest` is registered.
    function isRegistered(bytes32 digest) external view returns (bool);

    /// @notice Whether `digest` is registered and not revoked.
    function isValid(bytes32 digest) external view returns (bool);

    /// @notice The stored batch of `root` (all fields zero if none), the number of the block
    /// whose state answered and the chain id.
    function lookupBatch(bytes32 root)
        external
        view
        returns (Batch memory batch, uint256 blockNumber, uint256 chainId);

    /// @notice Whether `leaf` is valid through batch `root`: the batch is registered and not
    /// revoked, `proof` (sorted-pair siblings, leaf to root) shows the leaf under `root`, the
    /// leaf's fields are in range, its digest is not revoked and has no single record.
    function isValidInBatch(bytes32 root, Leaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool);

    /// @notice `registrar`'s next signed-registration nonce in lane `lane`: (lane << 64) | the
    /// number of nonces used or cancelled in that lane.
    function nonces(address registrar, uint192 lane) external view returns (uint256);

    /// @notice ERC-5267: the EIP-712 domain of `registerBySig` (fields 0x0f: name, version,
    /// chainId, verifyingContract).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        );

    /// @notice The attestations of `digest` by each of `evaluators` (all fields zero where
    /// none), the number of the block whose state answered and the chain id.
    function attestations(bytes32 digest, address[] calldata evaluators)
        external
        view
        returns (Attestation[] memory found, uint256 blockNumber, uint256 chainId);

    /// @notice The latest audit anchor of `service` (all zero if none), the number of the block
    /// whose state answered and the chain id.
    function latestAuditAnchor(address service)
        external
        view
        returns (AuditAnchor memory anchor, uint256 blockNumber, uint256 chainId);

    /// @notice The root `service` anchored for its log's first `size` entries; 0 = none.
    function auditRoot(address service, uint64 size) external view returns (bytes32);

    /// @notice Whether `account` holds `role`.
    function hasRole(Role role, address account) external view returns (bool);

    /// @notice The current admin.
    function admin() external view returns (address);

    /// @notice The proposed admin awaiting acceptance; 0 = none.
    function pendingAdmin() external view returns (address);
}
