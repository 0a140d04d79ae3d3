// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IModelRegistry} from "./IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Append-only, non-upgradeable registry of medical AI model checkpoints.
/// @dev Holds no ETH. Its one external call is the ERC-1271 `isValidSignature` staticcall that
/// `registerBySig` makes when a signature does not recover to the registrar and the registrar is
/// a contract (`registrar.code.length > 0`); a staticcall cannot change state, so it cannot
/// re-enter a write. Records are never edited; revocation is one-way.
///
/// Storage layout (one slot per line; slots of the first six mappings never move, since storage
/// proofs of `_entries` and `_revocations` are computed from their positions):
///   _admin                                   address (160)
///   _pendingAdmin                            address (160)
///   _roles[role][account]                    bool
///   _entries[digest]                         registrant (160) | registeredAt (40) |
///                                            registeredBlock (40) | accuracyBps (16)   = 256 bits
///   _revocations[digest].slot0               revokedAt (40) | revokedBlock (40) | reason (8)
///   _revocations[digest].slot1               replacement (256)
///   _batches[root]                           registrant (160) | registeredAt (40) |
///                                            registeredBlock (40) | revocationReason (8) = 248 bits
///   _attestations[digest][evaluator]         attestedAt (40) | attestedBlock (40) |
///                                            accuracyBps (16) | revokedAt (40)         = 136 bits
///   _auditHeads[service]                     size (64) | anchoredAt (40) | anchoredBlock (40)
///   _auditRoots[service][size]               root (256)
///   _nonces[registrar][lane]                 the lane's next sequence number + 1 (64);
///                                            0 = never touched (next sequence 0)
/// A registration writes exactly one fresh slot; the test-set, card and parent digests are in the
/// ModelRegistered event, found through `registeredBlock`. So does a batch, whatever its size: its
/// count and manifest digest are in the BatchRegistered event. A leaf revoked through its batch
/// is kept in `_revocations` like any revoked checkpoint, so one mapping says "revoked" for a
/// digest however it was anchored; it also leaves a tombstone in `_entries` (registrant 0,
/// registeredBlock = the revocation's block), which `register` sees in the slot it reads anyway
/// and refuses. An attestation is one slot (its digests are in the AttestationMade event); an
/// audit anchor writes its head and the root for its size, so earlier roots stay readable; a
/// signed registration writes its lane's nonce besides the record. Granting the Registrar role
/// sets the account's lane 0 (the default lane) from 0 to 1, the admin paying that fresh slot
/// once (22 100 gas), so the registrar's first signed request there only updates a slot (5 000
/// gas with the cold access, instead of 22 100); any other lane's first request still pays for
/// its fresh slot. A lane's slot is never set back to 0, so no grant, removal or re-grant makes
/// a used nonce valid again.
contract ModelRegistry is IModelRegistry {
    uint16 internal constant MAX_ACCURACY_BPS = 10_000;
    uint8 internal constant REASON_MAX_CODED = 7;
    uint8 internal constant REASON_OTHER = 255;

    // EIP-712: the typed data `registerBySig` verifies, and the domain it is signed for.
    bytes32 internal constant REGISTRATION_TYPEHASH = keccak256(
        "Registration(bytes32 digest,uint16 accuracyBps,bytes32 testSetDigest,bytes32 cardDigest,"
        "bytes32 parent,address registrar,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 internal constant NAME_HASH = keccak256("ModelRegistry");
    bytes32 internal constant VERSION_HASH = keccak256("1");
    // secp256k1's order n, halved: a signature with s above it has a twin (n - s, other v) that
    // recovers the same signer, so only the low-s form is accepted (EIP-2).
    uint256 internal constant HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    // ERC-1271: what `isValidSignature` returns for a signature the wallet accepts.
    bytes4 internal constant ERC1271_MAGIC = 0x1626ba7e;

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

    /// The latest audit anchor of a service without its root, which `_auditRoots` keeps by size.
    struct AuditHead {
        uint64 size;
        uint40 anchoredAt;
        uint40 anchoredBlock;
    }

    address private _admin;
    address private _pendingAdmin;
    mapping(Role => mapping(address => bool)) private _roles;
    mapping(bytes32 => Entry) private _entries;
    mapping(bytes32 => Revocation) private _revocations;
    mapping(bytes32 => Batch) private _batches;
    mapping(bytes32 => mapping(address => Attestation)) private _attestations;
    mapping(address => AuditHead) private _auditHeads;
    mapping(address => mapping(uint64 => bytes32)) private _auditRoots;
    mapping(address => mapping(uint192 => uint64)) private _nonces;

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
        _register(msg.sender, digest, accuracyBps, testSetDigest, cardDigest, parent);
    }

    /// @inheritdoc IModelRegistry
    function registerBySig(
        Leaf calldata record,
        address registrar,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        // The deadline is a bound the signer chose, compared as such: no equality on a time.
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert ModelRegistryExpiredSignature(deadline, block.timestamp);
        _useNonce(registrar, nonce);
        bytes32 hash = _typedDataHash(record, registrar, nonce, deadline);
        _checkSignature(registrar, hash, signature);
        _register(
            registrar,
            record.digest,
            record.accuracyBps,
            record.testSetDigest,
            record.cardDigest,
            record.parent
        );
    }

    /// @inheritdoc IModelRegistry
    function cancelNonce(uint256 nonce) external {
        _useNonce(msg.sender, nonce);
        emit NonceCancelled(msg.sender, nonce);
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
    function attest(bytes32 digest, uint16 accuracyBps, bytes32 testSetDigest, bytes32 reportDigest)
        external
    {
        if (!_roles[Role.Evaluator][msg.sender]) {
            revert ModelRegistryMissingRole(msg.sender, Role.Evaluator);
        }
        if (accuracyBps > MAX_ACCURACY_BPS) revert ModelRegistryAccuracyOutOfRange(accuracyBps);
        if (testSetDigest == bytes32(0)) revert ModelRegistryZeroTestSetDigest();
        // A batched leaf (and a leaf revoked through its batch) has no registrant here: only a
        // single record, whose registrant is known on chain, can be told apart from its evaluator.
        address registrant = _entries[digest].registrant;
        if (registrant == address(0)) revert ModelRegistryUnknownModel(digest);
        if (registrant == msg.sender) revert ModelRegistrySelfAttestation(digest, msg.sender);
        Revocation storage revocation = _revocations[digest];
        if (revocation.reason != 0) revert ModelRegistryRevokedModel(digest, revocation.revokedAt);
        Attestation storage attestation = _attestations[digest][msg.sender];
        // attestedAt is the interface's documented "none" sentinel; it is never compared with
        // a time, only with zero.
        // slither-disable-next-line incorrect-equality,timestamp
        if (attestation.attestedAt != 0 && attestation.revokedAt == 0) {
            revert ModelRegistryAlreadyAttested(digest, msg.sender, attestation.attestedAt);
        }

        _attestations[digest][msg.sender] = Attestation({
            attestedAt: uint40(block.timestamp),
            attestedBlock: uint40(block.number),
            accuracyBps: accuracyBps,
            revokedAt: 0
        });
        emit AttestationMade(
            digest, msg.sender, accuracyBps, testSetDigest, reportDigest, uint40(block.timestamp)
        );
    }

    /// @inheritdoc IModelRegistry
    function revokeAttestation(bytes32 digest) external {
        Attestation storage attestation = _attestations[digest][msg.sender];
        // As in attest: zero is the documented sentinel, not a moment.
        // slither-disable-next-line incorrect-equality,timestamp
        if (attestation.attestedAt == 0 || attestation.revokedAt != 0) {
            revert ModelRegistryNoAttestation(digest, msg.sender);
        }

        attestation.revokedAt = uint40(block.timestamp);
        emit AttestationRevoked(digest, msg.sender, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    function anchorAuditLog(uint64 size, bytes32 root) external {
        if (root == bytes32(0)) revert ModelRegistryZeroDigest();
        AuditHead storage head = _auditHeads[msg.sender];
        uint64 anchoredSize = head.size;
        // Also refuses size 0 for a first anchor: an empty log has nothing to commit to.
        if (size <= anchoredSize) revert ModelRegistryAuditLogNotGrowing(msg.sender, size, anchoredSize);

        _auditHeads[msg.sender] = AuditHead({
            size: size,
            anchoredAt: uint40(block.timestamp),
            anchoredBlock: uint40(block.number)
        });
        _auditRoots[msg.sender][size] = root;
        emit AuditLogAnchored(msg.sender, size, root, uint40(block.timestamp));
    }

    /// @inheritdoc IModelRegistry
    /// @dev Granting the Registrar role also initialises the account's lane-0 nonce slot when it
    /// was never touched: the admin pays its one-time 22 100 gas here, so that the registrar's
    /// first signed request in its default lane costs what every later one does. A slot already
    /// in use (nonces used or cancelled before, or a role removed and granted again) keeps its
    /// sequence.
    function grantRole(Role role, address account) external onlyAdmin {
        if (account == address(0)) revert ModelRegistryZeroAddress();
        if (role == Role.None) revert ModelRegistryMissingRole(account, role);
        if (_roles[role][account]) return;
        _roles[role][account] = true;
        if (role == Role.Registrar) {
            mapping(uint192 => uint64) storage lanes = _nonces[account];
            if (lanes[0] == 0) lanes[0] = 1;
        }
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
    function nonces(address registrar, uint192 lane) external view returns (uint256) {
        return (uint256(lane) << 64) | _sequence(_nonces[registrar][lane]);
    }

    /// @inheritdoc IModelRegistry
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
        )
    {
        return (hex"0f", "ModelRegistry", "1", block.chainid, address(this), bytes32(0), extensions);
    }

    /// @inheritdoc IModelRegistry
    function attestations(bytes32 digest, address[] calldata evaluators)
        external
        view
        returns (Attestation[] memory found, uint256 blockNumber, uint256 chainId)
    {
        found = new Attestation[](evaluators.length);
        mapping(address => Attestation) storage byEvaluator = _attestations[digest];
        for (uint256 i = 0; i < evaluators.length; ++i) {
            found[i] = byEvaluator[evaluators[i]];
        }
        return (found, block.number, block.chainid);
    }

    /// @inheritdoc IModelRegistry
    function latestAuditAnchor(address service)
        external
        view
        returns (AuditAnchor memory anchor, uint256 blockNumber, uint256 chainId)
    {
        AuditHead memory head = _auditHeads[service];
        anchor = AuditAnchor({
            size: head.size,
            anchoredAt: head.anchoredAt,
            anchoredBlock: head.anchoredBlock,
            root: _auditRoots[service][head.size]
        });
        return (anchor, block.number, block.chainid);
    }

    /// @inheritdoc IModelRegistry
    function auditRoot(address service, uint64 size) external view returns (bytes32) {
        return _auditRoots[service][size];
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

    /// `register`'s checks and write, for `registrant`: the caller, or the signer of a request.
    function _register(
        address registrant,
        bytes32 digest,
        uint16 accuracyBps,
        bytes32 testSetDigest,
        bytes32 cardDigest,
        bytes32 parent
    ) private {
        if (!_roles[Role.Registrar][registrant]) {
            revert ModelRegistryMissingRole(registrant, Role.Registrar);
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
            registrant: registrant,
            registeredAt: uint40(block.timestamp),
            registeredBlock: uint40(block.number),
            accuracyBps: accuracyBps
        });
        emit ModelRegistered(
            digest, registrant, parent, accuracyBps, testSetDigest, cardDigest, uint40(block.timestamp)
        );
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

    /// Consume `nonce` of `owner`: it must be the next one of its lane, which then moves on.
    function _useNonce(address owner, uint256 nonce) private {
        uint192 lane = uint192(nonce >> 64);
        // One storage pointer for the read and the write: the lane's slot is hashed once.
        mapping(uint192 => uint64) storage lanes = _nonces[owner];
        uint64 next = _sequence(lanes[lane]);
        uint256 expected = (uint256(lane) << 64) | next;
        if (nonce != expected) revert ModelRegistryInvalidNonce(owner, nonce, expected);
        // The slot keeps the sequence after this one plus 1, whether it was touched or not.
        // A lane would need 2^64 - 1 requests to wrap.
        unchecked {
            lanes[lane] = next + 2;
        }
    }

    /// The next sequence number of a lane from its slot: 0 for a slot never touched, else the
    /// stored value less 1.
    function _sequence(uint64 stored) private pure returns (uint64) {
        unchecked {
            return stored == 0 ? 0 : stored - 1;
        }
    }

    /// The EIP-712 hash of a signed registration: keccak256("\x19\x01" ‖ domain separator ‖
    /// hashStruct(Registration)). Hashed in memory past the free-memory pointer, without
    /// allocating: the record is five static words, copied from calldata as they are.
    function _typedDataHash(Leaf calldata record, address registrar, uint256 nonce, uint256 deadline)
        private
        view
        returns (bytes32 hash)
    {
        bytes32 typeHash = REGISTRATION_TYPEHASH;
        bytes32 domainSeparator = _domainSeparator();
        // Assembly only to hash without allocating (as OpenZeppelin's MessageHashUtils does); it
        // writes past the free-memory pointer and moves nothing.
        // slither-disable-next-line assembly
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            calldatacopy(add(m, 0x20), record, 0xa0)
            mstore(add(m, 0xc0), registrar)
            mstore(add(m, 0xe0), nonce)
            mstore(add(m, 0x100), deadline)
            let structHash := keccak256(m, 0x120)
            mstore(m, hex"1901")
            mstore(add(m, 0x02), domainSeparator)
            mstore(add(m, 0x22), structHash)
            hash := keccak256(m, 0x42)
        }
    }

    /// Revert unless `signature` is `registrar`'s over `hash`: by ECDSA recovery, else, when
    /// `registrar` is a contract, through its ERC-1271 `isValidSignature` (OpenZeppelin's
    /// SignatureChecker order: an EOA's request never pays the 2 600 gas of a cold code-size
    /// check). Fails closed: anything unexpected is a refusal.
    function _checkSignature(address registrar, bytes32 hash, bytes calldata signature)
        private
        view
    {
        address recovered = _recover(hash, signature);
        if (recovered == registrar && recovered != address(0)) return;
        if (registrar.code.length == 0) revert ModelRegistryInvalidSigner(registrar, recovered);
        // A staticcall: the wallet can read but change nothing, here or elsewhere.
        // slither-disable-next-line low-level-calls
        (bool ok, bytes memory answer) =
            registrar.staticcall(abi.encodeWithSelector(ERC1271_MAGIC, hash, signature));
        if (!ok || answer.length != 32 || bytes32(answer) != bytes32(ERC1271_MAGIC)) {
            revert ModelRegistryInvalidSigner(registrar, address(0));
        }
    }

    /// The signer of a 65-byte (r, s, v) signature of `hash`, or 0 for a malformed one: another
    /// length, s above n/2 (the malleable twin) or v other than 27 or 28.
    function _recover(bytes32 hash, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) return address(0);
        return ecrecover(hash, v, r, s);
    }

    /// The EIP-712 domain separator, computed at each use from this chain's id and this address,
    /// so a signature made for one chain never verifies on a fork that took another id. It is
    /// not cached in immutables as OpenZeppelin's EIP712 does: immutables would make the runtime
    /// code differ per chain and address, and clients check that code byte for byte against the
    /// committed build. Computing it costs about a hundred gas.
    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _removeRole(Role role, address account) private {
        if (!_roles[role][account]) return;
        delete _roles[role][account];
        emit RoleRemoved(role, account, msg.sender);
    }
}
