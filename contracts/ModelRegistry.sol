// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IModelRegistry} from "./IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Append-only, non-upgradeable registry of medical AI model checkpoints.
/// @dev Holds no ETH and makes no external calls. Records are never edited; revocation is one-way.
///
/// Storage layout (one slot per line):
///   _admin                                   address (160)
///   _pendingAdmin                            address (160)
///   _roles[role][account]                    bool
///   _entries[digest]                         registrant (160) | registeredAt (40) |
///                                            registeredBlock (40) | accuracyBps (16)   = 256 bits
///   _revocations[digest].slot0               revokedAt (40) | revokedBlock (40) | reason (8)
///   _revocations[digest].slot1               replacement (256)
///   _batches[root]                           registrant (160) | registeredAt (40) |
///                                            registeredBlock (40) | revocationReason (8) = 248 bits
/// A registration writes exactly one fresh slot; the test-set, card and parent digests are in the
/// ModelRegistered event, found through `registeredBlock`. So does a batch, whatever its size: its
/// count and manifest digest are in the BatchRegistered event. A leaf revoked through its batch
/// is kept in `_revocations` like any revoked checkpoint, so one mapping says "revoked" for a
/// digest however it was anchored; it also leaves a tombstone in `_entries` (registrant 0,
/// registeredBlock = the revocation's block), which `register` sees in the slot it reads anyway
/// and refuses.
contract ModelRegistry is IModelRegistry {
    uint16 internal constant MAX_ACCURACY_BPS = 10_000;
    uint8 internal constant REASON_MAX_CODED = 7;
    uint8 internal constant REASON_OTHER = 255;

    struct Entry {
        address registrant;
        uint40 registeredAt;
        uint40 registeredBlock;
        uint16 accuracyBps;
    }

    struct Revocation {
        uint40 revokedAt;
        uint40 revokedBlock;
        uint8 reason;
        bytes32 replacement;
    }

    address private _admin;
    address private _pendingAdmin;
    mapping(Role => mapping(address => bool)) private _roles;
    mapping(bytes32 => Entry) private _entries;
    mapping(bytes32 => Revocation) private _revocations;
    mapping(bytes32 => Batch) private _batches;

    /// @param initialAdmin The first admin; it is not given any other role.
    constructor(address initialAdmin) {
        if (initialAdmin == address(0)) revert ModelRegistryZeroAddress();
        _admin = initialAdmin;
        emit AdminTransferred(address(0), initialAdmin);
    }

    modifier onlyAdmin() {
        if (msg.sender != _admin) revert ModelRegistryNotAdmin(msg.sender);
        _;
    }

    /// @inheritdoc IModelRegistry
    function register(
        bytes32 digest,
        uint16 accuracyBps,
        bytes32 testSetDigest,
        bytes32 cardDigest,
        bytes32 parent
    ) external {
        if (!_roles[Role.Registrar][msg.sender]) {
            revert ModelRegistryMissingRole(msg.sender, Role.Registrar);
        }
        if (digest == bytes32(0)) revert ModelRegistryZeroDigest();
        if (accuracyBps > MAX_ACCURACY_BPS) revert ModelRegistryAccuracyOutOfRange(accuracyBps);
        if (testSetDigest == bytes32(0)) revert ModelRegistryZeroTestSetDigest();
        if (cardDigest == bytes32(0)) revert ModelRegistryZeroCardDigest();
        Entry storage entry = _entries[digest];
        if (entry.registrant != address(0)) revert ModelRegistryAlreadyRegistered(digest, entry.registrant);
        // A checkpoint revoked as a batch leaf stays revoked: its tombstone (a block, no
        // registrant) is in the slot just read, so this check costs a registration no extra SLOAD.
        if (entry.registeredBlock != 0) {
            revert ModelRegistryAlreadyRevoked(digest, _revocations[digest].revokedAt);
        }
        if (parent != bytes32(0) && (parent == digest || _entries[parent].registrant == address(0))) {
            revert ModelRegistryInvalidParent(digest, parent);
        }

        _entries[digest] = Entry({
            registrant: msg.sender,
            registeredAt: uint40(block.timestamp),
            registeredBlock: uint40(block.number),
            accuracyBps: accuracyBps
        });
        emit ModelRegistered(
            digest, msg.sender, parent, accuracyBps, testSetDigest, cardDigest, uint40(block.timestamp)
        );
    }

    /// @inheritdoc IModelRegistry
    function revoke(bytes32 digest, uint8 reason, bytes32 replacement) external {
        Entry storage entry = _entries[digest];
        if (entry.registrant == address(0)) revert ModelRegistryUnknownModel(digest);
        if (msg.sender != entry.registrant && !_roles[Role.Revoker][msg.sender]) {
            revert ModelRegistryNotAllowedToRevoke(msg.sender, digest);
        }
        Revocation storage revocation = _revocations[digest];
        if (revocation.reason != 0) {
            revert ModelRegistryAlreadyRevoked(digest, revocation.revokedAt);
        }
        _checkReason(reason);
        if (
            replacement != bytes32(0)
                && (replacement == digest || _entries[replacement].registrant == address(0)
                    || _revocations[replacement].reason != 0)
        ) {
            revert ModelRegistryInvalidReplacement(digest, replacement);
        }

        revocation.revokedAt = uint40(block.timestamp);
        revocation.revokedBlock = uint40(block.number);
        revocation.reason = reason;
        if (replacement != bytes32(0)) revocation.replacement = replacement;
        emit ModelRevoked(digest, msg.sender, replacement, reason, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    function registerBatch(bytes32 root, uint32 count, bytes32 manifestDigest) external {
        if (!_roles[Role.Registrar][msg.sender]) {
            revert ModelRegistryMissingRole(msg.sender, Role.Registrar);
        }
        if (root == bytes32(0) || manifestDigest == bytes32(0)) revert ModelRegistryZeroDigest();
        if (count == 0) revert ModelRegistryEmptyBatch();
        Batch storage batch = _batches[root];
        if (batch.registrant != address(0)) {
            revert ModelRegistryBatchAlreadyRegistered(root, batch.registrant);
        }

        _batches[root] = Batch({
            registrant: msg.sender,
            registeredAt: uint40(block.timestamp),
            registeredBlock: uint40(block.number),
            revocationReason: 0
        });
        emit BatchRegistered(root, msg.sender, count, manifestDigest, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    function revokeBatch(bytes32 root, uint8 reason) external {
        Batch storage batch = _revocableBatch(root);
        if (batch.revocationReason != 0) revert ModelRegistryBatchRevoked(root, batch.revocationReason);
        _checkReason(reason);

        batch.revocationReason = reason;
        emit BatchRevoked(root, msg.sender, reason, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    function revokeLeaf(bytes32 root, Leaf calldata leaf, bytes32[] calldata proof, uint8 reason)
        external
    {
        _revocableBatch(root);
        bytes32 digest = leaf.digest;
        if (!_proves(root, leaf, proof)) revert ModelRegistryInvalidProof(root, digest);
        // A single record is its registrant's: a batch's registrant cannot withdraw it this way.
        address single = _entries[digest].registrant;
        if (single != address(0)) revert ModelRegistryAlreadyRegistered(digest, single);
        Revocation storage revocation = _revocations[digest];
        if (revocation.reason != 0) revert ModelRegistryAlreadyRevoked(digest, revocation.revokedAt);
        _checkReason(reason);

        revocation.revokedAt = uint40(block.timestamp);
        revocation.revokedBlock = uint40(block.number);
        revocation.reason = reason;
        _entries[digest].registeredBlock = uint40(block.number);
        emit BatchLeafRevoked(root, digest, msg.sender, reason, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    function grantRole(Role role, address account) external onlyAdmin {
        if (account == address(0)) revert ModelRegistryZeroAddress();
        if (role == Role.None) revert ModelRegistryMissingRole(account, role);
        if (_roles[role][account]) return;
        _roles[role][account] = true;
        emit RoleGranted(role, account, msg.sender);
    }

    /// @inheritdoc IModelRegistry
    function removeRole(Role role, address account) external onlyAdmin {
        _removeRole(role, account);
    }

    /// @inheritdoc IModelRegistry
    function renounceRole(Role role) external {
        _removeRole(role, msg.sender);
    }

    /// @inheritdoc IModelRegistry
    function transferAdmin(address newAdmin) external onlyAdmin {
        _pendingAdmin = newAdmin;
        emit AdminTransferStarted(msg.sender, newAdmin);
    }

    /// @inheritdoc IModelRegistry
    function acceptAdmin() external {
        address pending = _pendingAdmin;
        if (msg.sender != pending || pending == address(0)) {
            revert ModelRegistryNotPendingAdmin(msg.sender);
        }
        address previous = _admin;
        _admin = pending;
        delete _pendingAdmin;
        emit AdminTransferred(previous, pending);
    }

    /// @inheritdoc IModelRegistry
    function getRecord(bytes32 digest) external view returns (Record memory record) {
        record = _record(digest);
        if (record.registrant == address(0)) revert ModelRegistryUnknownModel(digest);
    }

    /// @inheritdoc IModelRegistry
    function lookup(bytes32 digest)
        external
        view
        returns (
            Record memory record,
            uint256 blockNumber,
            uint256 chainId,
            bytes32 registeredBlockHash
        )
    {
        record = _record(digest);
        // blockhash is zero for the current block and anything older than 256 blocks, as the
        // interface documents; block 0 (no record) would name the genesis block instead.
        if (record.registrant != address(0)) registeredBlockHash = blockhash(record.registeredBlock);
        return (record, block.number, block.chainid, registeredBlockHash);
    }

    /// @inheritdoc IModelRegistry
    function isRegistered(bytes32 digest) external view returns (bool) {
        return _entries[digest].registrant != address(0);
    }

    /// @inheritdoc IModelRegistry
    function isValid(bytes32 digest) external view returns (bool) {
        // The reason code (never a time) says "revoked"; Slither taints the whole struct with the
        // timestamp stored beside it.
        // slither-disable-next-line incorrect-equality
        return _entries[digest].registrant != address(0) && _revocations[digest].reason == 0;
    }

    /// @inheritdoc IModelRegistry
    function lookupBatch(bytes32 root)
        external
        view
        returns (Batch memory batch, uint256 blockNumber, uint256 chainId)
    {
        return (_batches[root], block.number, block.chainid);
    }

    /// @inheritdoc IModelRegistry
    function isValidInBatch(bytes32 root, Leaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        Batch memory batch = _batches[root];
        bytes32 digest = leaf.digest;
        // Reason codes (never times) say "revoked", as in isValid.
        // slither-disable-next-line incorrect-equality
        return batch.registrant != address(0) && batch.revocationReason == 0
            && digest != bytes32(0) && leaf.accuracyBps <= MAX_ACCURACY_BPS
            && leaf.testSetDigest != bytes32(0) && leaf.cardDigest != bytes32(0)
            && _entries[digest].registrant == address(0) && _revocations[digest].reason == 0
            && _proves(root, leaf, proof);
    }

    /// @inheritdoc IModelRegistry
    function hasRole(Role role, address account) external view returns (bool) {
        return _roles[role][account];
    }

    /// @inheritdoc IModelRegistry
    function admin() external view returns (address) {
        return _admin;
    }

    /// @inheritdoc IModelRegistry
    function pendingAdmin() external view returns (address) {
        return _pendingAdmin;
    }

    function _record(bytes32 digest) private view returns (Record memory) {
        Entry memory entry = _entries[digest];
        Revocation memory revocation = _revocations[digest];
        return Record({
            registrant: entry.registrant,
            registeredAt: entry.registeredAt,
            registeredBlock: entry.registeredBlock,
            accuracyBps: entry.accuracyBps,
            revokedAt: revocation.revokedAt,
            revokedBlock: revocation.revokedBlock,
            revocationReason: revocation.reason,
            replacement: revocation.replacement
        });
    }

    /// A registered batch that the caller may revoke, or a revert saying why not.
    function _revocableBatch(bytes32 root) private view returns (Batch storage batch) {
        batch = _batches[root];
        address registrant = batch.registrant;
        if (registrant == address(0)) revert ModelRegistryUnknownBatch(root);
        if (msg.sender != registrant && !_roles[Role.Revoker][msg.sender]) {
            revert ModelRegistryNotAllowedToRevokeBatch(msg.sender, root);
        }
    }

    function _checkReason(uint8 reason) private pure {
        if (reason == 0 || (reason > REASON_MAX_CODED && reason != REASON_OTHER)) {
            revert ModelRegistryInvalidReason(reason);
        }
    }

    /// OpenZeppelin's MerkleProof.verify over StandardMerkleTree's leaf: the leaf hashed twice
    /// (so no 64-byte internal node passes for a leaf), then each sibling hashed in sorted order.
    function _proves(bytes32 root, Leaf calldata leaf, bytes32[] calldata proof)
        private
        pure
        returns (bool)
    {
        bytes32 node = keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.digest, leaf.accuracyBps, leaf.testSetDigest, leaf.cardDigest, leaf.parent
                    )
                )
            )
        );
        for (uint256 i = 0; i < proof.length; ++i) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encode(node, sibling))
                : keccak256(abi.encode(sibling, node));
        }
        return node == root;
    }

    function _removeRole(Role role, address account) private {
        if (!_roles[role][account]) return;
        delete _roles[role][account];
        emit RoleRemoved(role, account, msg.sender);
    }
}
